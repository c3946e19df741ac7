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

/// Library directories of a Debian arm64 root (multiarch), in ld.so's order.
pub const AARCH64_LIB_DIRS: [&str; 4] =
    ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"];

/// The library directories a Debian root searches for programs of `machine`.
pub fn default_lib_dirs(machine: Machine) -> &'static [&'static str] {
    if machine == Machine::AARCH64 {
        &AARCH64_LIB_DIRS
    } else {
        &DEFAULT_LIB_DIRS
    }
}

/// What an ELF file's code runs on: its machine (`e_machine`), class and byte order. A root
/// file system holds one machine's programs and libraries; the closure refuses any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub e_machine: u16,
    pub class64: bool,
    pub little_endian: bool,
}

impl Machine {
    /// x86-64 (amd64), the machine of today's images.
    pub const X86_64: Machine =
        Machine { e_machine: goblin::elf::header::EM_X86_64, class64: true, little_endian: true };
    /// AArch64 (arm64), little-endian.
    pub const AARCH64: Machine =
        Machine { e_machine: goblin::elf::header::EM_AARCH64, class64: true, little_endian: true };

    /// The machine of the ELF file `data`, from its identification and header only.
    pub fn of(data: &[u8]) -> Result<Machine> {
        use goblin::elf::header;
        let h = goblin::elf::Elf::parse_header(data).context("not an ELF header")?;
        Ok(Machine {
            e_machine: h.e_machine,
            class64: h.e_ident[header::EI_CLASS] == header::ELFCLASS64,
            little_endian: h.e_ident[header::EI_DATA] == header::ELFDATA2LSB,
        })
    }

    /// How `file` names it, e.g. `x86-64`, `AArch64`, `Intel 80386 (32-bit)`.
    pub fn name(self) -> String {
        let base = goblin::elf::header::machine_to_str(self.e_machine).to_string();
        match (self.class64, self.little_endian) {
            (true, true) => base,
            (class64, little) => format!(
                "{base} ({}-bit, {})",
                if class64 { 64 } else { 32 },
                if little { "little-endian" } else { "big-endian" }
            ),
        }
    }
}

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
/// Every file must be for `machine`: an input or interpreter of another machine is refused with
/// its name, and a library of another machine is passed over in the search, as ld.so passes
/// it over, and named if nothing else is found. Returns install path (where ld.so will look at
/// run time) -> the file holding its bytes, relative to `root`.
pub fn closure(
    root: &Dir,
    files: &[(PathBuf, Vec<u8>)],
    lib_dirs: &[String],
    machine: Machine,
) -> Result<BTreeMap<PathBuf, PathBuf>> {
    Ok(closure_over(&[root], files, lib_dirs, machine)?
        .into_iter()
        .map(|(install, (_, real))| (install, real))
        .collect())
}

/// [`closure`] over several roots, searched in order for each library (the first that has
/// it answers): each library with the index of the root it is in and its path there.
pub fn closure_over(
    roots: &[&Dir],
    files: &[(PathBuf, Vec<u8>)],
    lib_dirs: &[String],
    machine: Machine,
) -> Result<BTreeMap<PathBuf, (usize, PathBuf)>> {
    let shown: Vec<String> = roots.iter().map(|r| r.path().display().to_string()).collect();
    let shown = shown.join(" and ");
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(PathBuf, Vec<u8>)> =
        files.iter().filter(|(_, d)| is_elf(d)).cloned().collect();
    let for_this = |at: &Path, data: &[u8]| -> Result<()> {
        let m = Machine::of(data).with_context(|| format!("reading ELF {}", at.display()))?;
        if m != machine {
            bail!(
                "{} is an ELF file for {}, in a file system for {}",
                at.display(),
                m.name(),
                machine.name()
            );
        }
        Ok(())
    };
    for (at, data) in &queue {
        for_this(at, data)?;
    }
    // The first root in which `p` resolves: its index and the real path there.
    let find = |p: &Path| -> Option<(usize, PathBuf)> {
        roots
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.resolve_in_root(p, true).ok().map(|real| (i, real)))
    };
    while let Some((at, data)) = queue.pop_front() {
        let info = dyn_info(&data).with_context(|| format!("reading ELF {}", at.display()))?;
        let mut wanted: Vec<(PathBuf, (usize, PathBuf))> = Vec::new();
        if let Some(interp) = &info.interp {
            let (i, real) = find(Path::new(interp)).with_context(|| {
                format!("interpreter {interp} of {} not found under {shown}", at.display())
            })?;
            for_this(Path::new(interp), &roots[i].read(&real)?)
                .with_context(|| format!("the interpreter of {}", at.display()))?;
            wanted.push((PathBuf::from(interp), (i, real)));
        }
        let search: Vec<String> = info
            .search
            .iter()
            .map(|d| expand_origin(d, &at))
            .chain(lib_dirs.iter().cloned())
            .collect();
        for lib in &info.needed {
            let mut other_machines = Vec::new();
            let mut found = None;
            'dirs: for d in &search {
                let p = lexical(&Path::new(d).join(lib));
                for (i, root) in roots.iter().enumerate() {
                    let Ok(real) = root.resolve_in_root(&p, true) else { continue };
                    let bytes = root.read(&real)?;
                    match Machine::of(&bytes) {
                        Ok(m) if m == machine => {
                            found = Some((p, (i, real)));
                            break 'dirs;
                        }
                        Ok(m) => other_machines.push(format!("{} ({})", p.display(), m.name())),
                        Err(_) => other_machines.push(format!("{} (not ELF)", p.display())),
                    }
                }
            }
            match found {
                Some(f) => wanted.push(f),
                None if !other_machines.is_empty() => bail!(
                    "library {lib} (needed by {}) for {} not found under {shown}: only {}",
                    at.display(),
                    machine.name(),
                    other_machines.join(", ")
                ),
                None => bail!(
                    "library {lib} (needed by {}) not found in {} under {shown}",
                    at.display(),
                    search.join(":"),
                ),
            }
        }
        for (install, (i, real)) in wanted {
            if seen.insert(install.clone()) {
                let bytes = roots[i].read(&real)?;
                queue.push_back((install.clone(), bytes));
                out.insert(install, (i, real));
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
        let c = closure(
            &Dir::open(Path::new("/")).unwrap(),
            &[("/bin/sh".into(), data)],
            &dirs,
            Machine::X86_64,
        )
        .unwrap();
        let names: Vec<String> = c.keys().map(|p| p.display().to_string()).collect();
        assert!(names.iter().any(|n| n.ends_with("libc.so.6")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("ld-linux")), "{names:?}");
    }
    /// `data` with its e_machine set to AArch64's (the rest stays x86-64 code: only the header
    /// is read).
    fn as_aarch64(mut data: Vec<u8>) -> Vec<u8> {
        data[18..20].copy_from_slice(&goblin::elf::header::EM_AARCH64.to_le_bytes());
        data
    }

    #[test]
    fn machines_never_mix() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(Machine::of(&sh).unwrap(), Machine::X86_64);
        assert_eq!(Machine::of(&as_aarch64(sh.clone())).unwrap(), Machine::AARCH64);
        assert_eq!(Machine::AARCH64.name(), "AARCH64");
        let mut i386 = sh.clone();
        i386[4] = goblin::elf::header::ELFCLASS32;
        assert!(Machine::of(&i386).map(|m| m.name().contains("32-bit")).unwrap_or(true));
        let dirs: Vec<String> = DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect();
        let host = Dir::open(Path::new("/")).unwrap();
        // An input for another machine is refused, with its name.
        let err = closure(
            &host,
            &[("/bin/busybox".into(), as_aarch64(sh.clone()))],
            &dirs,
            Machine::X86_64,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}")
                .contains("/bin/busybox is an ELF file for AARCH64, in a file system for X86_64"),
            "{err:#}"
        );
        // A root whose first library directory holds libc for another machine: ld.so passes it
        // over for the one after it, and so does the closure; with only the wrong one, the
        // error names it.
        let libc =
            host.resolve_in_root(Path::new("/lib/x86_64-linux-gnu/libc.so.6"), true).unwrap();
        let loader = host.resolve_in_root(Path::new("/lib64/ld-linux-x86-64.so.2"), true).unwrap();
        let t = tempfile::tempdir().unwrap();
        let put = |at: &str, data: &[u8]| {
            let p = t.path().join(at);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        put("lib64/ld-linux-x86-64.so.2", &host.read(&loader).unwrap());
        put("lib/x86_64-linux-gnu/libc.so.6", &as_aarch64(host.read(&libc).unwrap()));
        let root = Dir::open(t.path()).unwrap();
        let program = [(PathBuf::from("/bin/sh"), sh.clone())];
        let needs_libc = dyn_info(&sh).unwrap().needed.contains(&"libc.so.6".to_string());
        if needs_libc && dyn_info(&sh).unwrap().needed.len() == 1 {
            let err = closure(&root, &program, &dirs, Machine::X86_64).unwrap_err();
            assert!(
                format!("{err:#}").contains("only /lib/x86_64-linux-gnu/libc.so.6 (AARCH64)"),
                "{err:#}"
            );
            put("usr/lib/x86_64-linux-gnu/libc.so.6", &host.read(&libc).unwrap());
            let c = closure(&root, &program, &dirs, Machine::X86_64).unwrap();
            assert_eq!(
                c.get(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")),
                Some(&PathBuf::from("usr/lib/x86_64-linux-gnu/libc.so.6")),
                "{c:?}"
            );
        }
        // The interpreter is checked too.
        put("lib64/ld-linux-x86-64.so.2", &as_aarch64(host.read(&loader).unwrap()));
        let err = closure(&root, &program, &dirs, Machine::X86_64).unwrap_err();
        assert!(format!("{err:#}").contains("the interpreter of /bin/sh"), "{err:#}");
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
        let c = closure(
            &root,
            &[(main.clone(), std::fs::read(&main).unwrap())],
            &dirs,
            Machine::X86_64,
        )
        .unwrap();
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
            Machine::X86_64,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("libfoo.so (needed by /elsewhere/main)"), "{err:#}");
    }
}
