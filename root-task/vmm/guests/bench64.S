/* The VM-exit benchmark: ROUNDS port writes the VMM handles as no-ops,
 * timed with RDTSC (under icount: instructions); the total goes to the VMM
 * by hypercall (RAX = HC_BENCH, RBX = TSC ticks, RCX = ROUNDS). */
.include "common.inc"
.set ROUNDS, 500
.set NULL_PORT, 0x510
.code64
.text
start:
    movq %rsi, %r10
    rdtsc
    shlq $32, %rdx
    orq %rax, %rdx
    movq %rdx, %r8
    movq $ROUNDS, %r9
1:  movw $NULL_PORT, %dx
    outb %al, %dx
    decq %r9
    jnz 1b
    rdtsc
    shlq $32, %rdx
    orq %rax, %rdx
    subq %r8, %rdx
    movq %rdx, %rbx
    movq $ROUNDS, %rcx
    movq $HC_BENCH, %rax
    testq %r10, %r10
    jnz 2f
    vmmcall
    jmp 3f
2:  vmcall
3:  cli
    hlt
