//! Work the guest's module loader is spared: ftrace's call-site list and the module's BTF.
//!
//! Loading a module, the guest kernel turns every `call __fentry__` the list `__mcount_loc`
//! names into a NOP. After boot that is live code patching (`text_poke` through a breakpoint,
//! with TLB flushes and core syncs), and under TCG each patch also throws away translated
//! code: loading xfs took 1.25 s with the list and 0.5 s without. It also parses the module's
//! BTF (type information for BPF tracing), another 5-15 %. A box traces nothing in its guest
//! kernel, so the host hides both from the loader:
//! - `__mcount_loc` loses `SHF_ALLOC`: the loader neither finds it nor applies its
//!   relocations. The calls stay and go to `__fentry__`, which returns at once (one call and
//!   return per function entry of a module, nothing else);
//! - `.BTF` gets size 0, which the kernel treats as a module without BTF.
//!
//! Only section headers change; a module that is not a well-formed 64-bit little-endian ELF
//! file is passed on unchanged (the kernel judges it as it would have).

/// `SHF_ALLOC`: the section occupies memory in the loaded module.
const SHF_ALLOC: u64 = 0x2;
/// ftrace's list of call sites (`FTRACE_CALLSITE_SECTION`).
const MCOUNT_LOC: &[u8] = b"__mcount_loc";
/// The module's BTF.
const BTF: &[u8] = b".BTF";
/// `sizeof(Elf64_Shdr)`.
const SHDR_LEN: usize = 64;

/// `ko` with its ftrace call-site list and BTF hidden from the module loader.
pub fn trim(mut ko: Vec<u8>) -> Vec<u8> {
    let Some(sections) = Sections::of(&ko) else {
        return ko;
    };
    for at in sections.headers() {
        match sections.name(&ko, at) {
            Some(MCOUNT_LOC) => {
                if let Some(flags) = read_u64(&ko, at + 8) {
                    write_u64(&mut ko, at + 8, flags & !SHF_ALLOC);
                }
            }
            Some(BTF) => write_u64(&mut ko, at + 32, 0),
            _ => {}
        }
    }
    ko
}

/// Where a module's section headers and section names are.
struct Sections {
    /// Offset of the first section header.
    table: usize,
    /// How many.
    count: usize,
    /// Offset and size of the section-name string table.
    names: (usize, usize),
}

impl Sections {
    fn of(ko: &[u8]) -> Option<Self> {
        // 64-bit (2), little-endian (1), ELF version 1, a relocatable object (ET_REL = 1).
        if ko.get(..7)? != b"\x7fELF\x02\x01\x01" || read_u16(ko, 16)? != 1 {
            return None;
        }
        let table = usize::try_from(read_u64(ko, 0x28)?).ok()?;
        if usize::from(read_u16(ko, 0x3a)?) != SHDR_LEN {
            return None;
        }
        let count = usize::from(read_u16(ko, 0x3c)?);
        let end = table.checked_add(count.checked_mul(SHDR_LEN)?)?;
        if end > ko.len() {
            return None;
        }
        let strtab = table + usize::from(read_u16(ko, 0x3e)?).checked_mul(SHDR_LEN)?;
        if strtab >= end {
            return None;
        }
        let names = (
            usize::try_from(read_u64(ko, strtab + 24)?).ok()?,
            usize::try_from(read_u64(ko, strtab + 32)?).ok()?,
        );
        if names.0.checked_add(names.1)? > ko.len() {
            return None;
        }
        Some(Self {
            table,
            count,
            names,
        })
    }

    /// Offsets of the section headers after the null one.
    fn headers(&self) -> impl Iterator<Item = usize> + '_ {
        (1..self.count).map(|i| self.table + i * SHDR_LEN)
    }

    /// The name of the section whose header is at `at`, without its NUL.
    fn name<'a>(&self, ko: &'a [u8], at: usize) -> Option<&'a [u8]> {
        let offset = usize::try_from(read_u32(ko, at)?).ok()?;
        let strings = ko.get(self.names.0..self.names.0 + self.names.1)?;
        let rest = strings.get(offset..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..len])
    }
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn write_u64(b: &mut [u8], at: usize, v: u64) {
    if let Some(slot) = b.get_mut(at..at + 8) {
        slot.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 relocatable with sections null, .text, __mcount_loc, .BTF, .shstrtab.
    fn module() -> Vec<u8> {
        let names = b"\0.text\0__mcount_loc\0.BTF\0.shstrtab\0";
        let name_at = |n: &[u8]| {
            names
                .windows(n.len())
                .position(|w| w == n)
                .map(|p| u32::try_from(p).unwrap())
                .unwrap()
        };
        let mut ko = vec![0u8; 64];
        ko[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        ko[16..18].copy_from_slice(&1u16.to_le_bytes());
        let strtab_at = ko.len() as u64;
        ko.extend_from_slice(names);
        while ko.len() % 8 != 0 {
            ko.push(0);
        }
        let table = ko.len() as u64;
        ko[0x28..0x30].copy_from_slice(&table.to_le_bytes());
        ko[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        ko[0x3c..0x3e].copy_from_slice(&5u16.to_le_bytes());
        ko[0x3e..0x40].copy_from_slice(&4u16.to_le_bytes());
        let shdr = |name: u32, flags: u64, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&1u32.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h
        };
        ko.extend(vec![0u8; 64]);
        ko.extend(shdr(name_at(b".text\0"), 0x6, 0, 16));
        ko.extend(shdr(name_at(b"__mcount_loc\0"), SHF_ALLOC, 0, 8));
        ko.extend(shdr(name_at(b".BTF\0"), 0, 0, 4096));
        ko.extend(shdr(
            name_at(b".shstrtab\0"),
            0,
            strtab_at,
            names.len() as u64,
        ));
        ko
    }

    fn header(ko: &[u8], index: usize) -> (u64, u64) {
        let at = usize::try_from(read_u64(ko, 0x28).unwrap()).unwrap() + index * 64;
        (
            read_u64(ko, at + 8).unwrap(),
            read_u64(ko, at + 32).unwrap(),
        )
    }

    #[test]
    fn the_call_site_list_is_not_allocated_and_btf_is_empty() {
        let before = module();
        let after = trim(before.clone());
        assert_eq!(after.len(), before.len(), "only headers change");
        assert_eq!(header(&after, 1), (0x6, 16), ".text untouched");
        assert_eq!(header(&after, 2), (0, 8), "__mcount_loc: no SHF_ALLOC");
        assert_eq!(header(&after, 3), (0, 0), ".BTF: size 0");
        assert_eq!(header(&after, 4), header(&before, 4));
        assert_eq!(
            trim(after.clone()),
            after,
            "trimming twice changes nothing more"
        );
    }

    #[test]
    fn what_is_not_a_well_formed_elf64_module_passes_unchanged() {
        let mut broken = module();
        broken[0x3e..0x40].copy_from_slice(&9u16.to_le_bytes()); // no such string table
        assert_eq!(trim(broken.clone()), broken);
        let mut short = module();
        short.truncate(200); // headers cut off
        assert_eq!(trim(short.clone()), short);
        let mut elf32 = module();
        elf32[4] = 1;
        assert_eq!(trim(elf32.clone()), elf32);
        assert_eq!(trim(b"not an elf".to_vec()), b"not an elf");
    }
}
