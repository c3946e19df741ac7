//! `alejandra [--check] PATH...`: format the `.nix` files named or found below the given
//! directories with alejandra's library, in place, or with `--check` only list the files that
//! would change (exit status 2) as `nix fmt -- --check` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut roots = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--check" | "-c") => check = true,
            Some("--help" | "-h") => {
                println!("usage: alejandra [--check] PATH...");
                return ExitCode::SUCCESS;
            }
            _ => roots.push(PathBuf::from(arg)),
        }
    }
    if roots.is_empty() {
        eprintln!("alejandra: name the .nix files or directories to format");
        return ExitCode::from(1);
    }
    let mut files = Vec::new();
    for root in &roots {
        if let Err(e) = collect(root, &mut files) {
            eprintln!("alejandra: {}: {e}", root.display());
            return ExitCode::from(1);
        }
    }
    files.sort();
    let mut changed = 0;
    for file in &files {
        match format(file, check) {
            Ok(false) => {}
            Ok(true) => {
                changed += 1;
                println!(
                    "{}{}",
                    if check { "would reformat " } else { "reformatted " },
                    file.display()
                );
            }
            Err(e) => {
                eprintln!("alejandra: {}: {e}", file.display());
                return ExitCode::from(1);
            }
        }
    }
    if check && changed > 0 {
        eprintln!("alejandra: {changed} of {} files are not formatted; run tools/alejandra without --check", files.len());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// The file itself, or every `*.nix` file below a directory (symlinks are not followed).
fn collect(path: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() || p.extension().is_some_and(|e| e == "nix") {
                collect(&p, files)?;
            }
        }
    } else if meta.is_file() {
        files.push(path.to_path_buf());
    }
    Ok(())
}

/// Format one file; true when its formatting changed (or would change, with `check`).
fn format(file: &Path, check: bool) -> Result<bool, String> {
    let before = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let (status, after) = alejandra::format::in_memory(file.display().to_string(), before.clone());
    match status {
        alejandra::format::Status::Error(e) => Err(e),
        alejandra::format::Status::Changed(false) => Ok(false),
        alejandra::format::Status::Changed(true) => {
            if !check {
                write_atomic(file, after.as_bytes()).map_err(|e| e.to_string())?;
            }
            Ok(true)
        }
    }
}

/// Replace `file` by a sibling temporary file, fsynced, then renamed over it.
fn write_atomic(file: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = file.file_name().ok_or(std::io::ErrorKind::InvalidInput)?;
    let tmp = file.with_file_name(format!(".{}.alejandra-tmp", name.to_string_lossy()));
    let perms = std::fs::metadata(file)?.permissions();
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.set_permissions(perms)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}
