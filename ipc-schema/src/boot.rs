//! What the kernel hands the root task: the layout of its CNode and the boot
//! information page (mapped read-only at [`BOOT_INFO_VADDR`]; its address is
//! also the root task's first argument, `rdi`).

/// Where the boot information page is mapped in the root task.
pub const BOOT_INFO_VADDR: u64 = 0x0000_7FFF_F000_0000;
/// Where the root task's IPC buffer is mapped.
pub const ROOT_IPC_BUFFER_VADDR: u64 = 0x0000_7FFF_E000_0000;
/// Top of the root task's initial stack (it grows down, [`ROOT_STACK_BYTES`]).
pub const ROOT_STACK_TOP: u64 = 0x0000_7FFF_D000_0000;
/// Size of the root task's initial stack.
pub const ROOT_STACK_BYTES: u64 = 256 * 1024;
/// Where boot modules are mapped read-only in the root task, one after another
/// (each 4 KiB aligned).
pub const MODULES_VADDR: u64 = 0x0000_6000_0000_0000;
/// Magic number at the start of [`BootInfo`].
pub const BOOT_INFO_MAGIC: u64 = 0x5441_524E_424F_4F54; // "TARNBOOT"

/// Fixed slots of the root task's CNode.
pub mod slot {
    /// Always empty (capability pointer 0 means "none").
    pub const NULL: u64 = 0;
    /// The root CNode itself.
    pub const ROOT_CNODE: u64 = 1;
    /// The root task's own thread.
    pub const ROOT_TCB: u64 = 2;
    /// The root task's address space.
    pub const ROOT_VSPACE: u64 = 3;
    /// The root task's IPC buffer frame.
    pub const ROOT_IPC_BUFFER: u64 = 4;
    /// Authority over interrupt lines.
    pub const IRQ_CONTROL: u64 = 5;
    /// Every I/O port (0..=0xFFFF).
    pub const IO_PORTS: u64 = 6;
    /// Power off and kernel statistics.
    pub const MACHINE: u64 = 7;
    /// The boot information frame.
    pub const BOOT_INFO: u64 = 8;
    /// First slot the kernel fills with variable content (see [`super::BootInfo`]).
    pub const FIRST_DYNAMIC: u64 = 16;
}

/// log2 of the number of slots in the root CNode at boot (unless the kernel
/// option `root_cnode_bits=N` says otherwise: [`BootInfo::root_cnode_bits`]
/// is the size given; the root task grows it with `CNodeGrow`). Every page of a boot
/// module takes a slot (its read-only frame capability), and a config
/// archive carrying a Linux kernel and initramfs is 16 MiB (4 000 pages):
/// 2^14 slots leave room for about 48 MiB of modules beside the root
/// task's own use. Other processes' CNodes are smaller
/// (`tarn_rt::layout::PROCESS_CNODE_SIZE_BITS`).
pub const ROOT_CNODE_SIZE_BITS: u64 = 14;
/// Most untyped regions described.
pub const MAX_UNTYPED: usize = 64;
/// Most boot modules described.
pub const MAX_MODULES: usize = 16;
/// Longest module name (bytes, NUL padded).
pub const MODULE_NAME_BYTES: usize = 32;
/// Longest kernel command line passed on.
pub const CMDLINE_BYTES: usize = 512;
/// CPUs whose NUMA node the boot information records.
pub const MAX_BOOT_CPUS: usize = crate::MAX_CPUS;

/// One untyped capability handed to the root task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UntypedDesc {
    /// Physical base.
    pub phys: u64,
    /// log2 of its size in bytes.
    pub size_bits: u64,
    /// Slot of its capability in the root CNode.
    pub slot: u64,
}

/// One boot module (a program image travelling in the boot image).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleDesc {
    /// Name, NUL padded (e.g. `test-suite`).
    pub name: [u8; MODULE_NAME_BYTES],
    /// Where it is mapped (read-only) in the root task.
    pub vaddr: u64,
    /// Its size in bytes.
    pub size: u64,
    /// First slot of its read-only 4 KiB frame capabilities (one per page, in order).
    pub first_frame_slot: u64,
}

impl ModuleDesc {
    /// The name as text.
    pub fn name(&self) -> &str {
        let len = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MODULE_NAME_BYTES);
        core::str::from_utf8(&self.name[..len]).unwrap_or("")
    }
}

/// The boot information page.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// CPUs online (indices 0..cpu_count).
    pub cpu_count: u64,
    /// First empty slot of the root CNode after everything below.
    pub first_free_slot: u64,
    /// Slot of CPU 0's `Cpu` capability; CPU i's is at `first_cpu_slot + i`
    /// (0 = no CPU capabilities were given).
    pub first_cpu_slot: u64,
    /// Untyped regions in use (entries of `untyped`).
    pub untyped_count: u64,
    /// The untyped capabilities: all RAM the kernel does not use.
    pub untyped: [UntypedDesc; MAX_UNTYPED],
    /// Boot modules in use (entries of `modules`).
    pub module_count: u64,
    /// The boot modules.
    pub modules: [ModuleDesc; MAX_MODULES],
    /// Length of the kernel command line in `cmdline`.
    pub cmdline_len: u64,
    /// The kernel command line.
    pub cmdline: [u8; CMDLINE_BYTES],
    /// NUMA nodes (1 when the firmware gives no SRAT). Nodes are numbered
    /// densely from 0 in ascending order of the SRAT's proximity domains.
    pub node_count: u64,
    /// The NUMA node of CPU i (entries 0..cpu_count).
    pub cpu_nodes: [u8; MAX_BOOT_CPUS],
    /// log2 slots of the root CNode (slot [`slot::ROOT_CNODE`]) at boot.
    pub root_cnode_bits: u64,
}
const _: () = assert!(core::mem::size_of::<BootInfo>() <= 4096);

impl BootInfo {
    /// The NUMA node of CPU `cpu` (node 0 for a CPU the table does not
    /// cover).
    pub fn cpu_node(&self, cpu: u32) -> u32 {
        self.cpu_nodes
            .get(cpu as usize)
            .map_or(0, |node| u32::from(*node))
    }

    /// The command line as text.
    pub fn cmdline(&self) -> &str {
        let len = (self.cmdline_len as usize).min(CMDLINE_BYTES);
        core::str::from_utf8(&self.cmdline[..len]).unwrap_or("")
    }

    /// The untyped regions.
    pub fn untyped(&self) -> &[UntypedDesc] {
        &self.untyped[..(self.untyped_count as usize).min(MAX_UNTYPED)]
    }

    /// The boot modules.
    pub fn modules(&self) -> &[ModuleDesc] {
        &self.modules[..(self.module_count as usize).min(MAX_MODULES)]
    }

    /// The module called `name`.
    pub fn module(&self, name: &str) -> Option<&ModuleDesc> {
        self.modules().iter().find(|m| m.name() == name)
    }
}
