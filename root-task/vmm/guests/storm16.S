/* Hostile: an exit storm, writing an unhandled port as fast as it can. */
.include "common.inc"
.code16
.text
start:
1:  outb %al, $0x80
    jmp 1b
