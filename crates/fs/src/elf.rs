//! ELF facts read with goblin: the interpreter and DT_NEEDED closure of dynamic binaries,
//! resolved inside a given root (the pinned toolchain, never the host), and per-section
//! hashes for audits.

use crate::beneath::Dir;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

/// Library directories of a Debian amd64 root, in ld.so's order.
pub const DEFAULT_LIB_DIRS: [&str; 4] =
    ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib"];

pub struct DynInfo {
    pub interp: Option<String>,
    pub needed: Vec<String>,
    /// Directories searched before the default ones: DT_RUNPATH, or DT_RPATH when there is no
    /// RUNPATH (ld.so ignores RPATH then). Binaries from a Nix store carry these.
    pub search: Vec<String>,
}

/// The interpreter (PT_INTERP) of the ELF program `f`, read from its headers only (programs
/// like QEMU are tens of MiB); None for a static program. Not an ELF file is an error.
pub fn interpreter(f: &mut std::fs::File) -> Result<Option<String>> {
    use goblin::elf::{program_header::PT_INTERP, Elf, ProgramHeader};
    use std::io::{Read, Seek, SeekFrom};
    let mut head = Vec::new();
    f.by_ref().take(64 << 10).read_to_end(&mut head)?;
    if !is_elf(&head) {
        bail!("not an ELF program");
    }
    let header = Elf::parse_header(&head).context("ELF header")?;
    let ctx = goblin::container::Ctx::new(
        if header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        if header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2MSB {
            goblin::container::Endian::Big
        } else {
            goblin::container::Endian::Little
        },
    );
    let headers =
        ProgramHeader::parse(&head, header.e_phoff as usize, header.e_phnum as usize, ctx)
            .context("ELF program headers (beyond the first 64 KiB?)")?;
    let Some(interp) = headers.iter().find(|p| p.p_type == PT_INTERP) else {
        return Ok(None);
    };
    anyhow::ensure!(interp.p_filesz <= 4096, "a PT_INTERP of {} bytes", interp.p_filesz);
    let mut name = vec![0; interp.p_filesz as usize];
    f.seek(SeekFrom::Start(interp.p_offset))?;
    f.read_exact(&mut name)?;
    let name = name.split(|b| *b == 0).next().unwrap_or_default();
    Ok(Some(String::from_utf8(name.to_vec()).context("PT_INTERP is not UTF-8")?))
}

pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

pub fn dyn_info(data: &[u8]) -> Result<DynInfo> {
    let elf = goblin::elf::Elf::parse(data)?;
    let paths = if elf.runpaths.is_empty() { &elf.rpaths } else { &elf.runpaths };
    let search = paths
        .iter()
        .flat_map(|p| p.split(':'))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    Ok(DynInfo {
        interp: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        search,
    })
}

/// `a/b/../c` -> `a/c` without touching the file system (for install paths built from RUNPATH).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// A RUNPATH entry with `$ORIGIN` (the directory of the object, as installed) expanded.
fn expand_origin(dir: &str, installed_at: &Path) -> String {
    let origin = installed_at
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    dir.replace("${ORIGIN}", &origin).replace("$ORIGIN", &origin)
}

/// For dynamic ELF files (given with the path they are installed at), the interpreter and the
/// transitive DT_NEEDED libraries, searched in each object's RUNPATH/RPATH and then `lib_dirs`,
/// all inside `root` (symlinks followed as the root's own programs see them, never above it).
/// Returns install path (where ld.so will look at run time) -> the file holding its bytes,
/// relative to `root`.
pub fn closure(
    root: &Dir,
    files: &[(PathBuf, Vec<u8>)],
    lib_dirs: &[String],
) -> Result<BTreeMap<PathBuf, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(PathBuf, Vec<u8>)> =
        files.iter().filter(|(_, d)| is_elf(d)).cloned().collect();
    while let Some((at, data)) = queue.pop_front() {
        let info = dyn_info(&data).with_context(|| format!("reading ELF {}", at.display()))?;
        let mut wanted: Vec<(PathBuf, PathBuf)> = Vec::new();
        if let Some(interp) = &info.interp {
            let real = root
                .resolve_in_root(Path::new(interp), true)
                .with_context(|| format!("interpreter {interp} of {}", at.display()))?;
            wanted.push((PathBuf::from(interp), real));
        }
        let search: Vec<String> = info
            .search
            .iter()
            .map(|d| expand_origin(d, &at))
            .chain(lib_dirs.iter().cloned())
            .collect();
        for lib in &info.needed {
            let found = search.iter().find_map(|d| {
                let p = lexical(&Path::new(d).join(lib));
                root.resolve_in_root(&p, true).ok().map(|real| (p, real))
            });
            match found {
                Some(f) => wanted.push(f),
                None => bail!(
                    "library {lib} (needed by {}) not found in {} under {}",
                    at.display(),
                    search.join(":"),
                    root.path().display()
                ),
            }
        }
        for (install, real) in wanted {
            if seen.insert(install.clone()) {
                let bytes = root.read(&real)?;
                queue.push_back((install.clone(), bytes));
                out.insert(install, real);
            }
        }
    }
    Ok(out)
}

/// sha256 of every section of an ELF file, by name (for audits).
pub fn section_hashes(data: &[u8]) -> Result<BTreeMap<String, (u64, u64, String)>> {
    let elf = goblin::elf::Elf::parse(data)?;
    let mut out = BTreeMap::new();
    for sh in &elf.section_headers {
        let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("?").to_string();
        let (off, size) = (sh.sh_offset, sh.sh_size);
        let bytes = if sh.sh_type == goblin::elf::section_header::SHT_NOBITS {
            &[][..]
        } else {
            data.get(off as usize..(off + size) as usize).unwrap_or(&[])
        };
        out.insert(name, (off, size, crate::hash::sha256_bytes(bytes)));
    }
    Ok(out)
}

/// Symbols (name -> value) of an ELF file, for audits.
pub fn symbols(data: &[u8]) -> Result<BTreeMap<String, u64>> {
    let elf = goblin::elf::Elf::parse(data)?;
    let mut out = BTreeMap::new();
    for s in elf.syms.iter() {
        if let Some(n) = elf.strtab.get_at(s.st_name) {
            if !n.is_empty() {
                out.insert(n.to_string(), s.st_value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn host_sh_closure_has_libc_and_loader() {
        let data = std::fs::read("/bin/sh").unwrap();
        let dirs: Vec<String> = DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect();
        let c = closure(&Dir::open(Path::new("/")).unwrap(), &[("/bin/sh".into(), data)], &dirs)
            .unwrap();
        let names: Vec<String> = c.keys().map(|p| p.display().to_string()).collect();
        assert!(names.iter().any(|n| n.ends_with("libc.so.6")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
    }
    #[test]
    fn runpath_with_origin_is_searched_first() {
        // A program whose library lives beside it, found only through RUNPATH=$ORIGIN/../lib,
        // the way Nix-built binaries find theirs.
        let t = tempfile::tempdir().unwrap();
        let (bin, lib) = (t.path().join("app/bin"), t.path().join("app/lib"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(t.path().join("foo.c"), "int foo(void) { return 1; }\n").unwrap();
        std::fs::write(
            t.path().join("main.c"),
            "int foo(void); int main(void) { return foo(); }\n",
        )
        .unwrap();
        let cc = |args: &[&str]| {
            let st = std::process::Command::new("cc")
                .current_dir(t.path())
                .args(args)
                .status()
                .expect("cc (gcc) is needed by this test");
            assert!(st.success(), "cc {args:?}");
        };
        cc(&["-shared", "-fPIC", "-o", "app/lib/libfoo.so", "foo.c"]);
        cc(&[
            "-o",
            "app/bin/main",
            "main.c",
            "-Lapp/lib",
            "-lfoo",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib",
        ]);
        let main = bin.join("main");
        let info = dyn_info(&std::fs::read(&main).unwrap()).unwrap();
        assert_eq!(info.search, vec!["$ORIGIN/../lib".to_string()]);
        let dirs: Vec<String> = DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect();
        let root = Dir::open(Path::new("/")).unwrap();
        let c = closure(&root, &[(main.clone(), std::fs::read(&main).unwrap())], &dirs).unwrap();
        assert_eq!(
            c.get(&lib.join("libfoo.so")),
            Some(&lib.join("libfoo.so").strip_prefix("/").unwrap().to_path_buf()),
            "{c:?}"
        );
        assert!(c.keys().any(|k| k.ends_with("libc.so.6")), "{c:?}");
        // Without the RUNPATH the library is not found, and the error names the program.
        let err = closure(
            &root,
            &[(PathBuf::from("/elsewhere/main"), std::fs::read(&main).unwrap())],
            &dirs,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("libfoo.so (needed by /elsewhere/main)"), "{err:#}");
    }
}
