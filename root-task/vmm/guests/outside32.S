/* Hostile: write far beyond the guest's memory (flat protected mode). */
.include "common.inc"
.code32
.text
start:
    movl $0xdead, 0x04000000
    cli
    hlt
