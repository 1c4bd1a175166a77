/* Each interrupt is delivered once. Real mode: the PIT at about 1 kHz
 * (automatic EOI), then interrupts on and HLT until ROUNDS ticks were
 * taken. The handler stays BUSY_OUTER x 65535 LOOPs (about 2 ms, two tick
 * periods, interrupts off, no exits) and notes a tick taken inside it
 * (after ROUNDS ticks it returns at once: the next tick is always due by
 * the time a busy one returns, so only then does the main loop run):
 * QEMU's TCG delivered an EVENTINJ interrupt a second time at its next
 * icount deadline, wherever the guest was (Linux then deadlocked in its
 * timekeeping). The flags live in their own page, DATA: a store to the
 * code's page makes QEMU invalidate its translations, which also drops the
 * vector it kept. Ends printing "irqonce: ok" or "irqonce: interrupt inside
 * its handler", interrupts off. */
.include "common.inc"
.set ROUNDS, 8
.set BUSY_OUTER, 32
.set DATA, 0x6000
.set IN_TICK, DATA
.set BAD, DATA + 1
.set TICKS, DATA + 2
.code16
.text
start:
    cli
    movb $0, IN_TICK
    movb $0, BAD
    movw $0, TICKS
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
1:  sti
    hlt                             /* wait for a tick */
    cmpw $ROUNDS, TICKS
    jb 1b
    cli
    movw $(LOAD + ok - start), %si
    cmpb $0, BAD
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
    cmpb $0, %cs:IN_TICK
    je 5f
    movb $1, %cs:BAD                /* inside the handler: interrupts off */
5:  cmpw $ROUNDS, %cs:TICKS
    jae 8f                          /* done: let the main loop see it */
    movb $1, %cs:IN_TICK
    pushw %cx
    pushw %bx
    movw $BUSY_OUTER, %bx
6:  movw $0xFFFF, %cx
7:  loop 7b
    decw %bx
    jnz 6b
    popw %bx
    popw %cx
    incw %cs:TICKS
    movb $0, %cs:IN_TICK
8:  iret
ok:
    .asciz "irqonce: ok\n"
failed:
    .asciz "irqonce: interrupt inside its handler\n"
