/*
 * Application-processor start-up: real mode at AP_TRAMPOLINE_BASE (copied there
 * by smp.rs; SIPI vector = base >> 12), protected mode, long mode on the boot
 * page tables, then `ap_long_entry` in the higher half switches to the kernel
 * page tables and the CPU's own stack. Parameters sit at the end of the page.
 */
.set AP_BASE, 0x8000

.section .ap_trampoline, "ax"
.code16
.global ap_trampoline_begin
ap_trampoline_begin:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_gdt_ptr - ap_trampoline_begin)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(AP_BASE + ap32 - ap_trampoline_begin)

.code32
ap32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl (AP_BASE + ap_param_boot_cr3 - ap_trampoline_begin), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax                /* LME */
    orl (AP_BASE + ap_param_efer - ap_trampoline_begin), %eax
    wrmsr
    movl %cr0, %eax
    andl $0x9FFFFFFF, %eax          /* caches on: clear CD and NW left by INIT */
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $0x18, $(AP_BASE + ap64 - ap_trampoline_begin)

.code64
ap64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (AP_BASE + ap_param_arg - ap_trampoline_begin), %rdi
    movq (AP_BASE + ap_param_kernel_cr3 - ap_trampoline_begin), %rsi
    movq (AP_BASE + ap_param_stack - ap_trampoline_begin), %rdx
    movabs $ap_long_entry, %rax
    jmp *%rax

.balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF        /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
    .quad 0x00AF9A000000FFFF        /* 0x18: 64-bit code */
ap_gdt_ptr:
    .short ap_gdt_ptr - ap_gdt - 1
    .long AP_BASE + ap_gdt - ap_trampoline_begin

.balign 8
.global ap_param_boot_cr3, ap_param_efer, ap_param_arg, ap_param_kernel_cr3, ap_param_stack
ap_param_boot_cr3:   .quad 0
ap_param_efer:       .quad 0
ap_param_arg:        .quad 0
ap_param_kernel_cr3: .quad 0
ap_param_stack:      .quad 0
.global ap_trampoline_end
ap_trampoline_end:

.section .text
.global ap_long_entry
ap_long_entry:
    movq %rsi, %cr3
    movq %rdx, %rsp
    xorl %ebp, %ebp
    call ap_main
    ud2
