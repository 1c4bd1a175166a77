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
.set SYSCALL_CALL, 3
.set SYSCALL_REPLY_RECV, 7
.set SYSCALL_YIELD, 11
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
    movq %gs:GS_KERNEL_STACK_TOP, %rsp
    /*
     * The fastpath's two system calls have entries of their own (the
     * number tested here, once), which receive the capability pointer
     * (rdi) and message info (rsi) still in the registers the ABI passes
     * them in; so has `Yield` (a dispatched thread's yield starts the next
     * entry). Every entry sees the same saved frame, and each falls back
     * to the general path for whatever its fastpath declines. No `cld`:
     * FMASK clears DF on `syscall`.
     */
    cmpq $SYSCALL_CALL, %rax
    je 1f
    cmpq $SYSCALL_REPLY_RECV, %rax
    je 2f
    cmpq $SYSCALL_YIELD, %rax
    je 3f
    call syscall_from_user
    ud2
1:  call fastpath_call_from_user
    ud2
2:  call fastpath_reply_recv_from_user
    ud2
3:  call yield_from_user
    ud2

/* return_to_user(frame): rdi = the thread's saved frame (direct-map address). */
.global return_to_user_asm
return_to_user_asm:
    movq %rdi, %rsp
    POP_GPRS
    addq $16, %rsp
    swapgs
    iretq
