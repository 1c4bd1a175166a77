/* 32-bit protected mode (flat segments set by the VMM): print, halt. */
.include "common.inc"
.code32
.text
start:
    movw $UART, %dx
    movl $(LOAD + message - start), %esi
1:  lodsb
    testb %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  cli
    hlt
message:
    .asciz "hello from protected mode\n"
