/* 64-bit long mode (paging set by the VMM): spin, and after every SPIN
 * iterations report the count by hypercall (RAX = HC_PROGRESS, RBX = count).
 * RSI != 0 selects VMCALL (VMX) instead of VMMCALL (SVM). */
.include "common.inc"
.set SPIN, 0x400000
.code64
.text
start:
    xorq %rbx, %rbx
1:  movq $SPIN, %rcx
2:  decq %rcx
    jnz 2b
    incq %rbx
    movq $HC_PROGRESS, %rax
    testq %rsi, %rsi
    jnz 3f
    vmmcall
    jmp 1b
3:  vmcall
    jmp 1b
