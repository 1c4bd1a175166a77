/* Hostile: an empty interrupt table, then an exception: #UD cannot be
 * delivered (#GP), nor can that (#DF): triple fault. */
.include "common.inc"
.code16
.text
start:
    lidt (LOAD + empty_idt - start)
    ud2
empty_idt:
    .word 0
    .long 0
