//! The initial VMSA (SEV-ES save area) page of each vCPU, as QEMU, AWS EC2 or Google GCE
//! create it.
//!
//! The page is 4 KiB, zero except for the fields below (AMD APM vol. 2, table B-4 "VMSA layout,
//! state save area for SEV-ES"; names from Linux `struct sev_es_save_area`). Segments are
//! `{ le16 selector, le16 attrib, le32 limit, le64 base }`.
//!
//! | offset | field        | QEMU                  | EC2                          | GCE              |
//! |--------|--------------|-----------------------|------------------------------|------------------|
//! | 0x000  | es           | 0, 0x93, 0xffff, 0    | same                         | same             |
//! | 0x010  | cs           | 0xf000, 0x9b, 0xffff, eip & 0xffff0000 | attrib 0x9a for the BSP, 0x9b for APs | as QEMU |
//! | 0x020  | ss           | 0, 0x93, 0xffff, 0    | attrib 0x92                  | as QEMU          |
//! | 0x030…0x050 | ds, fs, gs | 0, 0x93, 0xffff, 0 | same                         | same             |
//! | 0x060  | gdtr         | 0, 0, 0xffff, 0       | same                         | same             |
//! | 0x070  | ldtr         | 0, 0x82, 0xffff, 0    | same                         | same             |
//! | 0x080  | idtr         | 0, 0, 0xffff, 0       | same                         | same             |
//! | 0x090  | tr           | 0, 0x8b, 0xffff, 0    | attrib 0x83                  | as QEMU          |
//! | 0x0d0  | efer         | 0x1000 (SVME)         | same                         | same             |
//! | 0x148  | cr4          | 0x40 (MCE)            | same                         | same             |
//! | 0x158  | cr0          | 0x10                  | same                         | same             |
//! | 0x160  | dr7          | 0x400                 | same                         | same             |
//! | 0x168  | dr6          | 0xffff0ff0            | same                         | same             |
//! | 0x170  | rflags       | 0x2                   | same                         | same             |
//! | 0x178  | rip          | eip & 0xffff          | same                         | same             |
//! | 0x268  | g_pat        | 0x0007040600070406    | same                         | 0x70106          |
//! | 0x310  | rdx          | vCPU signature        | 0x600                        | 0x600            |
//! | 0x3b0  | sev_features | guest features        | same                         | same             |
//! | 0x3e8  | xcr0         | 0x1                   | same                         | same             |
//! | 0x408  | mxcsr        | 0x1f80                | 0                            | 0                |
//! | 0x410  | x87_fcw      | 0x37f                 | 0                            | 0                |
//!
//! The BSP starts at EIP 0xfffffff0; APs start at the reset EIP from the OVMF footer table.

use super::gctx::PAGE_SIZE;
use super::vcpu::CpuSignature;
use super::VmmType;

/// Reset EIP of the bootstrap processor.
pub const BSP_EIP: u32 = 0xffff_fff0;

/// A segment register image `{ selector, attrib, limit, base }`.
#[derive(Clone, Copy)]
struct Segment {
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
}

impl Segment {
    const fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        Self {
            selector,
            attrib,
            limit,
            base,
        }
    }
}

/// Builds the initial VMSA page of a vCPU starting at `eip`.
///
/// `vcpu_sig` is used only for [`VmmType::Qemu`] (EC2 and GCE load RDX with 0x600); `None`
/// then stores 0.
pub fn vmsa_page(
    eip: u32,
    guest_features: u64,
    vcpu_sig: Option<CpuSignature>,
    vmm_type: VmmType,
) -> Box<[u8; PAGE_SIZE]> {
    let qemu_rdx = u64::from(vcpu_sig.map_or(0, CpuSignature::value));
    let (cs_attrib, ss_attrib, tr_attrib, rdx, mxcsr, fcw, g_pat) = match vmm_type {
        VmmType::Qemu => (
            0x9b,
            0x93,
            0x8b,
            qemu_rdx,
            0x1f80,
            0x37f,
            0x0007_0406_0007_0406,
        ),
        VmmType::Ec2 => {
            let cs = if eip == BSP_EIP { 0x9a } else { 0x9b };
            (cs, 0x92, 0x83, 0x600, 0, 0, 0x0007_0406_0007_0406)
        }
        VmmType::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };

    let mut page = Box::new([0u8; PAGE_SIZE]);
    let p = &mut *page;
    let data_seg = Segment::new(0, 0x93, 0xffff, 0);
    put_segment(p, 0x000, data_seg); // es
    put_segment(
        p,
        0x010,
        Segment::new(0xf000, cs_attrib, 0xffff, u64::from(eip & 0xffff_0000)),
    ); // cs
    put_segment(p, 0x020, Segment::new(0, ss_attrib, 0xffff, 0)); // ss
    put_segment(p, 0x030, data_seg); // ds
    put_segment(p, 0x040, data_seg); // fs
    put_segment(p, 0x050, data_seg); // gs
    put_segment(p, 0x060, Segment::new(0, 0, 0xffff, 0)); // gdtr
    put_segment(p, 0x070, Segment::new(0, 0x82, 0xffff, 0)); // ldtr
    put_segment(p, 0x080, Segment::new(0, 0, 0xffff, 0)); // idtr
    put_segment(p, 0x090, Segment::new(0, tr_attrib, 0xffff, 0)); // tr
    put(p, 0x0d0, &0x1000u64.to_le_bytes()); // efer: SVME
    put(p, 0x148, &0x40u64.to_le_bytes()); // cr4: MCE
    put(p, 0x158, &0x10u64.to_le_bytes()); // cr0: ET
    put(p, 0x160, &0x400u64.to_le_bytes()); // dr7
    put(p, 0x168, &0xffff_0ff0u64.to_le_bytes()); // dr6
    put(p, 0x170, &0x2u64.to_le_bytes()); // rflags
    put(p, 0x178, &u64::from(eip & 0xffff).to_le_bytes()); // rip
    put(p, 0x268, &u64::to_le_bytes(g_pat)); // g_pat
    put(p, 0x310, &rdx.to_le_bytes()); // rdx
    put(p, 0x3b0, &guest_features.to_le_bytes()); // sev_features
    put(p, 0x3e8, &0x1u64.to_le_bytes()); // xcr0
    put(p, 0x408, &u32::to_le_bytes(mxcsr)); // mxcsr
    put(p, 0x410, &u16::to_le_bytes(fcw)); // x87_fcw
    page
}

fn put_segment(page: &mut [u8; PAGE_SIZE], offset: usize, seg: Segment) {
    put(page, offset, &seg.selector.to_le_bytes());
    put(page, offset + 2, &seg.attrib.to_le_bytes());
    put(page, offset + 4, &seg.limit.to_le_bytes());
    put(page, offset + 8, &seg.base.to_le_bytes());
}

/// Writes `bytes` at the constant `offset`; all offsets used are below 0x420.
fn put(page: &mut [u8; PAGE_SIZE], offset: usize, bytes: &[u8]) {
    page[offset..offset + bytes.len()].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(p: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(p[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn qemu_bsp_page_has_reset_state() {
        let sig = CpuSignature::from_raw(0x00800f12);
        let p = vmsa_page(BSP_EIP, 0x21, Some(sig), VmmType::Qemu);
        assert_eq!(
            &p[0x10..0x20],
            &[0x00, 0xf0, 0x9b, 0, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(u64_at(&p[..], 0x178), 0xfff0);
        assert_eq!(u64_at(&p[..], 0x310), 0x00800f12);
        assert_eq!(u64_at(&p[..], 0x3b0), 0x21);
        assert_eq!(
            &p[0x408..0x412],
            &[0x80, 0x1f, 0, 0, 0, 0, 0, 0, 0x7f, 0x03]
        );
        assert!(p[0x420..].iter().all(|b| *b == 0));
    }

    #[test]
    fn ec2_bsp_and_ap_differ_in_cs_attrib() {
        let bsp = vmsa_page(BSP_EIP, 1, None, VmmType::Ec2);
        let ap = vmsa_page(0x0080_b004, 1, None, VmmType::Ec2);
        assert_eq!(bsp[0x12], 0x9a);
        assert_eq!(ap[0x12], 0x9b);
        assert_eq!(u64_at(&ap[..], 0x310), 0x600);
        assert_eq!(u64_at(&ap[..], 0x178), 0xb004);
        assert_eq!(u64_at(&ap[..], 0x18), 0x0080_0000);
    }

    #[test]
    fn gce_overrides_g_pat() {
        let p = vmsa_page(BSP_EIP, 1, None, VmmType::Gce);
        assert_eq!(u64_at(&p[..], 0x268), 0x70106);
        assert_eq!(u64_at(&p[..], 0x408), 0);
    }
}
