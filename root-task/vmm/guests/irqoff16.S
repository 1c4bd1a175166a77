/* Interrupt delivery respects the guest's IF and interrupt shadow. Real
 * mode: the PIT at about 1 kHz (automatic EOI), then ROUNDS times: a
 * window with interrupts off (CLI) that makes WINDOW exits (writes to the
 * VMM's no-op port, each a chance for the VMM and the kernel to inject the
 * timer interrupt that is pending meanwhile), then STI (its shadow covers
 * the store that ends the window), then interrupts on until a tick
 * arrives (HLT). The handler notes any tick taken inside a window. Ends
 * printing "irqoff: ok" or "irqoff: interrupt while masked", interrupts
 * off. This is the state Linux's return to user mode is in between swapgs
 * and iretq, where an injected interrupt crashes it. */
.include "common.inc"
.set ROUNDS, 40
.set WINDOW, 60
.set NULL_PORT, 0x510
.code16
.text
start:
    cli
    movw $(LOAD + tick - start), 0x20          /* IVT[8]: offset */
    movw $0, 0x22                              /* IVT[8]: segment */
    movb $0x11, %al                 /* PIC: ICW1 */
    outb %al, $0x20
    movb $0x08, %al                 /* ICW2: vector base 8 */
    outb %al, $0x21
    movb $0x04, %al                 /* ICW3 */
    outb %al, $0x21
    movb $0x03, %al                 /* ICW4: 8086 mode, automatic EOI */
    outb %al, $0x21
    movb $0xFE, %al                 /* mask all but IRQ0 */
    outb %al, $0x21
    movb $0x34, %al                 /* PIT channel 0, lo/hi, mode 2 */
    outb %al, $0x43
    movb $(1193 & 0xFF), %al        /* about 1 kHz */
    outb %al, $0x40
    movb $(1193 >> 8), %al
    outb %al, $0x40
    movw $NULL_PORT, %dx
round:
    cli
    movb $1, (LOAD + masked - start)
    movw $WINDOW, %cx
1:  outb %al, %dx                   /* an exit with interrupts off */
    loop 1b
    sti
    movb $0, (LOAD + masked - start) /* in the STI shadow: no interrupt yet */
    hlt                             /* interrupts on: wait for a tick */
    incw (LOAD + rounds - start)
    cmpw $ROUNDS, (LOAD + rounds - start)
    jb round
    cli
    movw $(LOAD + ok - start), %si
    cmpb $0, (LOAD + bad - start)
    je 2f
    movw $(LOAD + failed - start), %si
2:  movw $UART, %dx
3:  lodsb
    testb %al, %al
    jz 4f
    outb %al, %dx
    jmp 3b
4:  hlt
tick:
    cmpb $0, %cs:(LOAD + masked - start)
    je 5f
    movb $1, %cs:(LOAD + bad - start)
5:  iret
masked:
    .byte 0
bad:
    .byte 0
rounds:
    .word 0
ok:
    .asciz "irqoff: ok\n"
failed:
    .asciz "irqoff: interrupt while masked\n"
