/* Real mode: print a line on the UART, then halt with interrupts off. */
.include "common.inc"
.code16
.text
start:
    movw $UART, %dx
    movw $(LOAD + message - start), %si
1:  lodsb
    testb %al, %al
    jz 2f
    outb %al, %dx
    jmp 1b
2:  cli
    hlt
message:
    .asciz "hello from real mode\n"
