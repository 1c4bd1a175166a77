/*
 * The SVM world switch (AMD APM Vol. 2, 15.5 and 15.6). svm_run_asm enters
 * the guest whose VMCB is at rdi (physical), with the guest's general
 * registers (all but RAX/RSP, which live in the VMCB) at rdx (a direct-map
 * pointer), and this CPU's host VMSAVE area at rsi (physical).
 *
 * Interrupts: called with IF=0 and the kernel lock released. CLGI holds
 * interrupts while IF is set again, so that the guest runs with the host's
 * IF=1 and a physical interrupt exits it (INTR intercept, V_INTR_MASKING).
 * After #VMEXIT the host's FS/GS/TR/syscall MSRs come back with VMLOAD, then
 * STGI lets the pending interrupt in (handled by trap_dispatch as an
 * interrupt taken in kernel mode). The kernel stack is then reset and
 * svm_guest_exited continues: this path never returns.
 */
.set GS_KERNEL_STACK_TOP, 16

.section .text
.global svm_run_asm
svm_run_asm:
    pushq %rdx                  /* 16(%rsp): guest registers */
    pushq %rsi                  /* 8(%rsp): host VMSAVE area */
    pushq %rdi                  /* (%rsp): VMCB */
    clgi
    sti
    movq %rsi, %rax
    vmsave %rax
    movq %rdx, %rax
    movq 8(%rax), %rbx
    movq 16(%rax), %rcx
    movq 24(%rax), %rdx
    movq 32(%rax), %rsi
    movq 40(%rax), %rdi
    movq 48(%rax), %rbp
    movq 56(%rax), %r8
    movq 64(%rax), %r9
    movq 72(%rax), %r10
    movq 80(%rax), %r11
    movq 88(%rax), %r12
    movq 96(%rax), %r13
    movq 104(%rax), %r14
    movq 112(%rax), %r15
    movq (%rsp), %rax
    vmload %rax
    vmrun %rax
    movq (%rsp), %rax
    vmsave %rax
    movq 16(%rsp), %rax
    movq %rbx, 8(%rax)
    movq %rcx, 16(%rax)
    movq %rdx, 24(%rax)
    movq %rsi, 32(%rax)
    movq %rdi, 40(%rax)
    movq %rbp, 48(%rax)
    movq %r8, 56(%rax)
    movq %r9, 64(%rax)
    movq %r10, 72(%rax)
    movq %r11, 80(%rax)
    movq %r12, 88(%rax)
    movq %r13, 96(%rax)
    movq %r14, 104(%rax)
    movq %r15, 112(%rax)
    movq 8(%rsp), %rax
    vmload %rax
    stgi
    cli
    movq %gs:GS_KERNEL_STACK_TOP, %rsp
    xorl %ebp, %ebp
    cld
    call svm_guest_exited
    ud2
