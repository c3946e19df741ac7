//! Why two boot media differ, by field: GPT headers and partition entries, FAT boot sectors,
//! ISO 9660 primary volume descriptors, VHD footers, VMDK descriptors and PE (UKI) headers (`explain.rs` calls
//! [`explain`] before falling back to a byte summary). Each format's identifiers and dates are
//! exactly the fields where reproducibility is usually lost, so those are named.

use crate::steps::media::gpt::SECTOR;
use reprovm_fs::fields::{be_u32, le_u32, le_u64};

/// A field as read: its value, or `<past the end>` when the image is too short to hold it.
#[derive(PartialEq)]
struct Read<T>(Option<T>);

impl<T> From<std::io::Result<T>> for Read<T> {
    fn from(r: std::io::Result<T>) -> Self {
        Read(r.ok())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Read<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("<past the end>"),
        }
    }
}

/// The field differences between `a` and `b` when both are one of the formats; None otherwise.
pub(crate) fn explain(a: &[u8], b: &[u8]) -> Option<Vec<String>> {
    if is_gpt(a) && is_gpt(b) {
        return Some(gpt(a, b));
    }
    if is_vhd(a) && is_vhd(b) {
        return Some(vhd(a, b));
    }
    if a.starts_with(b"KDMV") && b.starts_with(b"KDMV") {
        let (ca, cb) = (crate::steps::media::vmdk::cid(a), crate::steps::media::vmdk::cid(b));
        let mut out = vec!["VMDK (stream-optimised)".to_string()];
        if ca != cb {
            out.push(format!("descriptor CID: {ca:?} vs {cb:?}"));
        }
        out.push(if a.len() == b.len() {
            "grains: same size".into()
        } else {
            format!(
                "sizes {} vs {}: the compressed grains differ (the raw disks do)",
                a.len(),
                b.len()
            )
        });
        return Some(out);
    }
    if is_iso(a) && is_iso(b) {
        return Some(iso(a, b));
    }
    if is_fat(a) && is_fat(b) {
        return Some(fat(a, b));
    }
    if let (Some((ta, ca)), Some((tb, cb))) =
        (crate::steps::media::pe::header_fields(a), crate::steps::media::pe::header_fields(b))
    {
        let mut out = vec!["PE image (EFI)".to_string()];
        field(&mut out, "COFF TimeDateStamp", ta, tb);
        field(&mut out, "optional header CheckSum", ca, cb);
        if a.len() != b.len() {
            out.push(format!("sizes {} vs {}: sections differ", a.len(), b.len()));
        }
        return Some(out);
    }
    None
}

fn field<T: std::fmt::Debug + PartialEq>(out: &mut Vec<String>, name: &str, a: T, b: T) {
    if a != b {
        out.push(format!("{name}: {a:?} vs {b:?}"));
    }
}

fn is_gpt(d: &[u8]) -> bool {
    d.len() > 1024 && &d[512..520] == b"EFI PART"
}

fn guid(d: &[u8]) -> String {
    uuid::Uuid::from_bytes_le(d[..16].try_into().unwrap_or([0; 16])).to_string()
}

fn gpt(a: &[u8], b: &[u8]) -> Vec<String> {
    let mut out = vec!["GPT disk".to_string()];
    let (ha, hb) = (&a[512..1024], &b[512..1024]);
    field(&mut out, "disk GUID", guid(&ha[56..72]), guid(&hb[56..72]));
    let u64_at = |h: &[u8], o: usize| Read::from(le_u64(h, o));
    field(&mut out, "last usable LBA", u64_at(ha, 48), u64_at(hb, 48));
    field(&mut out, "header CRC32", &ha[16..20], &hb[16..20]);
    field(&mut out, "entry array CRC32", &ha[88..92], &hb[88..92]);
    field(&mut out, "MBR boot code (sha256)", short_sha(&a[..440]), short_sha(&b[..440]));
    for i in 0..4 {
        let e = |d: &[u8]| {
            let o = 2 * SECTOR as usize + i * 128;
            let e = d.get(o..o + 128)?;
            Some((guid(&e[16..32]), le_u64(e, 32).ok()?, le_u64(e, 40).ok()?, le_u64(e, 48).ok()?))
        };
        if let (Some((ga, fa, la, aa)), Some((gb, fb, lb, ab))) = (e(a), e(b)) {
            field(&mut out, &format!("partition {} GUID", i + 1), &ga, &gb);
            field(&mut out, &format!("partition {} LBAs", i + 1), (fa, la), (fb, lb));
            field(
                &mut out,
                &format!("partition {} attributes", i + 1),
                format!("{aa:#x}"),
                format!("{ab:#x}"),
            );
            // The partitions' contents, when both sides place them alike.
            if (fa, la) == (fb, lb) && la > 0 {
                let (s, e) = ((fa * SECTOR) as usize, ((la + 1) * SECTOR) as usize);
                if let (Some(pa), Some(pb)) = (a.get(s..e), b.get(s..e)) {
                    if pa != pb {
                        let inner =
                            explain(pa, pb).unwrap_or_else(|| vec!["content differs".into()]);
                        out.extend(inner.into_iter().map(|l| format!("partition {}: {l}", i + 1)));
                    }
                }
            }
        }
    }
    out
}

fn is_vhd(d: &[u8]) -> bool {
    d.len() >= 512 && &d[d.len() - 512..d.len() - 504] == b"conectix"
}

fn vhd(a: &[u8], b: &[u8]) -> Vec<String> {
    let (fa, fb) = (&a[a.len() - 512..], &b[b.len() - 512..]);
    let mut out = vec!["VHD footer".to_string()];
    let be32 = |f: &[u8], o: usize| Read::from(be_u32(f, o));
    field(&mut out, "timestamp (s since 2000)", be32(fa, 24), be32(fb, 24));
    field(
        &mut out,
        "creator",
        String::from_utf8_lossy(&fa[28..32]),
        String::from_utf8_lossy(&fb[28..32]),
    );
    field(&mut out, "current size", &fa[48..56], &fb[48..56]);
    field(&mut out, "geometry", &fa[56..60], &fb[56..60]);
    field(&mut out, "unique id", guid(&fa[68..84]), guid(&fb[68..84]));
    field(&mut out, "checksum", be32(fa, 64), be32(fb, 64));
    if a[..a.len() - 512] != b[..b.len() - 512] {
        out.push("the disks before the footer differ".into());
        if let Some(inner) = explain(&a[..a.len() - 512], &b[..b.len() - 512]) {
            out.extend(inner);
        }
    }
    out
}

fn is_iso(d: &[u8]) -> bool {
    d.len() >= 0x8800 && &d[0x8001..0x8006] == b"CD001"
}

fn iso(a: &[u8], b: &[u8]) -> Vec<String> {
    let (pa, pb) = (&a[0x8000..0x8800], &b[0x8000..0x8800]);
    let text =
        |p: &[u8], o: usize, n: usize| String::from_utf8_lossy(&p[o..o + n]).trim_end().to_string();
    let mut out = vec!["ISO 9660 primary volume descriptor".to_string()];
    field(&mut out, "volume id", text(pa, 40, 32), text(pb, 40, 32));
    field(&mut out, "volume set id", text(pa, 190, 128), text(pb, 190, 128));
    for (name, o) in [
        ("creation date", 813),
        ("modification date", 830),
        ("expiration date", 847),
        ("effective date", 864),
    ] {
        field(&mut out, name, text(pa, o, 16), text(pb, o, 16));
    }
    field(&mut out, "volume space size", &pa[80..84], &pb[80..84]);
    if out.len() == 1 {
        out.push(
            "the descriptors are equal: the difference is in the directory records or files".into(),
        );
    }
    out
}

/// The first 16 hex digits of `d`'s sha256: enough to tell two blocks of code apart.
fn short_sha(d: &[u8]) -> String {
    reprovm_fs::hash::sha256_bytes(d)[..16].to_string()
}

fn is_fat(d: &[u8]) -> bool {
    d.len() > 512
        && d[510] == 0x55
        && d[511] == 0xaa
        && (&d[0x36..0x39] == b"FAT" || &d[0x52..0x57] == b"FAT32")
}

fn fat(a: &[u8], b: &[u8]) -> Vec<String> {
    let fat32 = |d: &[u8]| &d[0x52..0x57] == b"FAT32";
    let (oa, ob) = (if fat32(a) { 0x43 } else { 0x27 }, if fat32(b) { 0x43 } else { 0x27 });
    let mut out = vec!["FAT boot sector".to_string()];
    field(
        &mut out,
        "OEM name",
        String::from_utf8_lossy(&a[3..11]),
        String::from_utf8_lossy(&b[3..11]),
    );
    field(
        &mut out,
        "volume id",
        format!("{:02x?}", &a[oa..oa + 4]),
        format!("{:02x?}", &b[ob..ob + 4]),
    );
    field(
        &mut out,
        "volume label",
        String::from_utf8_lossy(&a[oa + 4..oa + 15]),
        String::from_utf8_lossy(&b[ob + 4..ob + 15]),
    );
    let u32_at = |d: &[u8], o: usize| Read::from(le_u32(d, o));
    field(&mut out, "hidden sectors (partition offset)", u32_at(a, 0x1c), u32_at(b, 0x1c));
    // The boot code after the BPB: a boot loader's installer (SYSLINUX) writes it.
    let (ca, cb) = (if fat32(a) { 0x5a } else { 0x3e }, if fat32(b) { 0x5a } else { 0x3e });
    field(&mut out, "boot code (sha256)", short_sha(&a[ca..510]), short_sha(&b[cb..510]));
    if a[..512] == b[..512] {
        out.push("the boot sectors are equal: the difference is in the tables, directory entries (times) or files".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_fields_that_differ() {
        let f = |uid: u8| {
            let mut d = vec![0u8; 4096];
            let n = d.len();
            d[n - 512..].copy_from_slice(&crate::steps::media::vhd::footer(
                2048,
                1_704_067_200,
                [uid; 16],
            ));
            d
        };
        let lines = explain(&f(1), &f(2)).unwrap();
        assert!(lines.iter().any(|l| l.starts_with("unique id:")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("timestamp")), "{lines:?}");
        let boot = |id: u8| {
            let mut d = vec![0u8; 1024];
            d[3..11].copy_from_slice(b"mkfs.fat");
            d[0x27..0x2b].fill(id);
            d[0x2b..0x36].copy_from_slice(b"ESP        ");
            d[0x36..0x3e].copy_from_slice(b"FAT16   ");
            d[510] = 0x55;
            d[511] = 0xaa;
            d
        };
        let lines = explain(&boot(1), &boot(2)).unwrap();
        assert!(lines.iter().any(|l| l.starts_with("volume id:")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with("boot code")), "{lines:?}");
        let mut installed = boot(1);
        installed[0x100] = 0xfa;
        let lines = explain(&boot(1), &installed).unwrap();
        assert!(lines.iter().any(|l| l.starts_with("boot code (sha256):")), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains("boot sectors are equal")), "{lines:?}");
        // A GPT disk whose MBR code and ESP attributes differ: both are named.
        let disk = |code: u8, attributes: u64| {
            let mut d = std::io::Cursor::new(vec![0u8; 8192 * 512]);
            let part = crate::steps::media::gpt::Partition {
                type_guid: crate::steps::media::gpt::ESP_TYPE,
                guid: uuid::Uuid::nil(),
                first_lba: 2048,
                last_lba: 4095,
                attributes,
                name: "ESP".into(),
            };
            crate::steps::media::gpt::write_tables(
                &mut d,
                8192,
                uuid::Uuid::nil(),
                &[part],
                &[code; 440],
            )
            .unwrap();
            d.into_inner()
        };
        let lines = explain(&disk(0, 0), &disk(1, 4)).unwrap();
        for f in ["MBR boot code (sha256):", "partition 1 attributes: \"0x0\" vs \"0x4\""] {
            assert!(lines.iter().any(|l| l.starts_with(f)), "{f}: {lines:?}");
        }
    }

    #[test]
    fn short_and_truncated_images_are_explained_without_a_panic() {
        // An ISO signature in a file too short for the whole volume descriptor: not an ISO.
        let mut iso = vec![0u8; 0x8100];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert!(!is_iso(&iso));
        assert_eq!(explain(&iso, &iso.clone()), None);
        // A field past the end is shown as such, never read out of bounds.
        assert_eq!(format!("{:?}", Read::from(le_u64(&[0u8; 4], 0))), "<past the end>");
        assert_eq!(format!("{:?}", Read::from(le_u32(&[7u8, 0, 0, 0], 0))), "7");
    }
}
