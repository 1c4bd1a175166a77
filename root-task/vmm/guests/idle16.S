/* Real mode, interrupt driven: program the PIC (vector base 8, automatic
 * end of interrupt) and the PIT (its slowest rate, 18.2 Hz), then HLT until
 * TICKS timer interrupts have arrived; print and halt with interrupts off. */
.include "common.inc"
.set TICKS, 20
.set DIVISOR, 0
.code16
.text
start:
    cli
    movw $(LOAD + tick - start), 0x20          /* IVT[8]: offset */
    movw $0, 0x22                   /* IVT[8]: segment */
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
    movb $(DIVISOR & 0xFF), %al
    outb %al, $0x40
    movb $(DIVISOR >> 8), %al
    outb %al, $0x40
    sti
1:  hlt
    cmpw $TICKS, (LOAD + ticks - start)
    jb 1b
    cli
    movw $UART, %dx
    movw $(LOAD + message - start), %si
2:  lodsb
    testb %al, %al
    jz 3f
    outb %al, %dx
    jmp 2b
3:  hlt
tick:
    incw %cs:(LOAD + ticks - start)
    iret
ticks:
    .word 0
message:
    .asciz "idle: 20 timer ticks\n"
