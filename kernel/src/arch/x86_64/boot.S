/*
 * Boot entry: PVH (QEMU -kernel) and multiboot2 (GRUB). Both arrive in 32-bit
 * protected mode with paging off; we zero .bss, build boot page tables
 * (identity 0..1 GiB, the same 1 GiB at the direct map and at KERNEL_VMA),
 * enter long mode and call `kernel_entry(protocol, info_phys)` in the higher half.
 */
.set KOFF, 0xFFFFFFFF80000000
.set BOOT_PROTOCOL_PVH, 1
.set BOOT_PROTOCOL_MULTIBOOT2, 2

/* Multiboot2 header (the multiboot2 spec, 3.1): magic, arch 0 (i386), length 24, checksum, end tag. */
.section .multiboot2, "a"
.balign 8
    .long 0xE85250D6
    .long 0
    .long 24
    .long 0x17ADAF12
    .short 0
    .short 0
    .long 8

/* Xen PVH entry note: XEN_ELFNOTE_PHYS32_ENTRY (18); 4-byte aligned or QEMU misses it. */
.section .note.pvh, "a", @note
.balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long _start_pvh

.section .boot.text, "ax"
.code32
.global _start_pvh
_start_pvh:
    movl $BOOT_PROTOCOL_PVH, %edi
    jmp boot32

.global _start_multiboot2
_start_multiboot2:
    movl $BOOT_PROTOCOL_MULTIBOOT2, %edi
    cmpl $0x36d76289, %eax
    je boot32
    xorl %edi, %edi

boot32:
    cli
    cld
    movl %ebx, %esi

    /* Zero .bss (loaders do it too; we do not rely on it). */
    movl $(__bss_start - KOFF), %edx
    movl $(__bss_end - KOFF), %ecx
1:  cmpl %ecx, %edx
    jae 2f
    movb $0, (%edx)
    incl %edx
    jmp 1b
2:
    movl $(boot_stack_top - KOFF), %esp

    /* Long mode and NX support (CPUID 0x80000001 EDX bits 29 and 20). */
    movl $0x80000001, %eax
    cpuid
    movl %edx, %ebp
    testl $(1 << 29), %ebp
    jz no_long_mode

    /* boot_pd: 512 x 2 MiB pages covering 0..1 GiB (present, writable, PS). */
    movl $(boot_pd - KOFF), %ebx
    xorl %ecx, %ecx
3:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, (%ebx,%ecx,8)
    movl $0, 4(%ebx,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 3b

    movl $(boot_pd - KOFF + 3), %eax
    movl %eax, (boot_pdpt_low - KOFF)
    movl %eax, (boot_pdpt_high - KOFF + 510 * 8)
    movl $(boot_pdpt_low - KOFF + 3), %eax
    movl %eax, (boot_pml4 - KOFF)
    movl %eax, (boot_pml4 - KOFF + 256 * 8)
    movl $(boot_pdpt_high - KOFF + 3), %eax
    movl %eax, (boot_pml4 - KOFF + 511 * 8)

    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl $(boot_pml4 - KOFF), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    testl $(1 << 20), %ebp
    jz 4f
    orl $0x800, %eax                /* NXE */
4:  wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $boot64

no_long_mode:
    movl $no_long_mode_msg, %ebx
5:  movb (%ebx), %al
    testb %al, %al
    jz 6f
    movw $0x3f8, %dx
    outb %al, %dx
    incl %ebx
    jmp 5b
6:  cli
    hlt
    jmp 6b

.code64
boot64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movabs $boot_stack_top, %rsp
    movl %edi, %edi
    movl %esi, %esi
    xorl %ebp, %ebp
    movabs $kernel_entry, %rax
    callq *%rax
7:  cli
    hlt
    jmp 7b

.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: data */
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

no_long_mode_msg:
    .asciz "tarn: this CPU has no long mode\r\n"

.section .bss
.balign 4096
.global boot_pml4
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096
.balign 16
boot_stack:     .skip 65536
.global boot_stack_top
boot_stack_top:
