/*
 * User-mode entry and exit. A thread's registers are saved in its TCB, in the
 * `TrapFrame` layout (trap.rs): the syscall entry builds that frame below
 * gs:CONTEXT_END (the end of the current TCB's frame, also TSS.RSP0, so
 * interrupts and exceptions from user mode push into the same place), then
 * switches to this CPU's kernel stack. The kernel never returns along the
 * entry path: it leaves through `return_to_user` with whichever thread runs next.
 */
.set GS_KERNEL_STACK_TOP, 16
.set GS_USER_RSP_SCRATCH, 24
.set GS_CONTEXT_END, 32
.set SYSCALL_VECTOR, 0x100
.set USER_CODE, 0x23
.set USER_DATA, 0x1b

.section .text
.global syscall_entry
syscall_entry:
    swapgs
    movq %rsp, %gs:GS_USER_RSP_SCRATCH
    movq %gs:GS_CONTEXT_END, %rsp
    pushq $USER_DATA
    pushq %gs:GS_USER_RSP_SCRATCH
    pushq %r11
    pushq $USER_CODE
    pushq %rcx
    pushq $0
    pushq $SYSCALL_VECTOR
    PUSH_GPRS
    movq %rsp, %rdi
    movq %gs:GS_KERNEL_STACK_TOP, %rsp
    xorl %ebp, %ebp
    cld
    call syscall_from_user
    ud2

/* return_to_user(frame): rdi = the thread's saved frame (direct-map address). */
.global return_to_user_asm
return_to_user_asm:
    movq %rdi, %rsp
    POP_GPRS
    addq $16, %rsp
    swapgs
    iretq
