/*
 * The VMX world switch (Intel SDM Vol. 3C, chapters 26 and 27).
 * vmx_launch_asm enters the guest whose VMCS is current on this CPU (host
 * state written by vmx.rs when the VMCS became current here, HOST_RIP =
 * vmx_exit_asm), by VMRESUME if esi is non-zero (the VMCS was launched on
 * this CPU and not cleared since), by VMLAUNCH otherwise, with the guest's
 * general registers, CR2 and IA32_KERNEL_GS_BASE at rdi (a direct-map
 * pointer: RAX..R15 without RSP, then CR2 at 120, KERNEL_GS_BASE at 128).
 * RSP, RIP and RFLAGS are in the VMCS; CR2 is not, and neither entry nor
 * exit switches IA32_KERNEL_GS_BASE, which a guest changes with SWAPGS:
 * both are switched here, the host's KERNEL_GS_BASE kept on the stack.
 *
 * The stack: this path never returns, so it starts again at the top of the
 * CPU's kernel stack and pushes three words (LAUNCH_FRAME_BYTES in vmx.rs):
 * HOST_RSP is then the same for every entry on this CPU, written once with
 * the rest of the host state.
 *
 * Interrupts: called with IF=0 and the kernel lock released. The guest
 * runs with external-interrupt exiting and without acknowledge-on-exit, so
 * a physical interrupt exits it and stays pending in the local APIC; after
 * the exit (RFLAGS = 2) sti/nop/cli lets it in as an interrupt taken in
 * kernel mode. VMLAUNCH/VMRESUME itself runs in the shadow of an STI: the
 * host's IF does not matter to the hardware, but Bochs re-evaluates which
 * interrupts are blocked only when IF changes at VM entry, and with IF=0
 * on both sides a guest with interrupts off would never see its
 * external-interrupt exits. The kernel stack is then reset and
 * vmx_guest_exited continues: this path never returns. An entry that fails
 * (VMfail) falls through and continues in vmx_entry_failed with its RFLAGS.
 */
.set VMX_GS_KERNEL_STACK_TOP, 16
.set MSR_KERNEL_GS_BASE, 0xC0000102

.section .text
.global vmx_launch_asm
vmx_launch_asm:
    movq %gs:VMX_GS_KERNEL_STACK_TOP, %rsp
    movl %esi, %r8d             /* VMRESUME? */
    movq %rdi, %rsi
    movl $MSR_KERNEL_GS_BASE, %ecx
    rdmsr
    pushq %rdx                  /* 16(%rsp): host KERNEL_GS_BASE, high */
    pushq %rax                  /* 8(%rsp): host KERNEL_GS_BASE, low */
    pushq %rsi                  /* (%rsp): guest register area */
    movl 128(%rsi), %eax
    movl 132(%rsi), %edx
    wrmsr
    movq 120(%rsi), %rax
    movq %rax, %cr2
    testl %r8d, %r8d            /* ZF kept by the moves below */
    movq %rsi, %rax
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
    movq (%rax), %rax
    jnz 1f
    sti                         /* shadow: nothing is taken before VMLAUNCH */
    vmlaunch
    jmp 2f
1:  sti                         /* likewise before VMRESUME */
    vmresume
2:  cli                         /* VMfail: IF off again; CF/ZF kept */
    pushfq
    popq %rdi                   /* VMfail: CF or ZF in RFLAGS */
    movl $MSR_KERNEL_GS_BASE, %ecx
    movl 8(%rsp), %eax
    movl 16(%rsp), %edx
    wrmsr
    movq %gs:VMX_GS_KERNEL_STACK_TOP, %rsp
    xorl %ebp, %ebp
    cld
    call vmx_entry_failed
    ud2

.global vmx_exit_asm
vmx_exit_asm:
    pushq %rax                  /* guest RAX; the area pointer at 8(%rsp) */
    movq 8(%rsp), %rax
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
    popq %rbx
    movq %rbx, (%rax)
    movq %cr2, %rbx
    movq %rbx, 120(%rax)
    movq %rax, %rbx
    movl $MSR_KERNEL_GS_BASE, %ecx
    rdmsr
    movl %eax, 128(%rbx)
    movl %edx, 132(%rbx)
    movl 8(%rsp), %eax
    movl 16(%rsp), %edx
    wrmsr
    sti
    nop
    cli
    movq %gs:VMX_GS_KERNEL_STACK_TOP, %rsp
    xorl %ebp, %ebp
    cld
    call vmx_guest_exited
    ud2
