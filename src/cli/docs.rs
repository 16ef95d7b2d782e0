//! Hidden `fts generate-docs DIR`: writes the man pages (`man/`) and shell
//! completions (`completions/`) from the clap definition. The committed
//! copies are checked against it by `tests/docs.rs`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use fts::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Directory that receives man/ and completions/.
    pub out: PathBuf,
}

fn write(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::local_io(d, e))?;
    }
    std::fs::write(path, data).map_err(|e| Error::local_io(path, e))
}

fn man(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| Error::other(e.to_string()))?;
    Ok(buf)
}

pub fn run(a: DocsArgs) -> Result<()> {
    let cmd = super::Cli::command();
    write(&a.out.join("man/fts.1"), &man(cmd.clone())?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("fts-{}", sub.get_name());
        let page = sub.clone().name(name.clone()).display_name(name.clone());
        write(&a.out.join(format!("man/{name}.1")), &man(page)?)?;
    }
    for (shell, file) in [
        (Shell::Bash, "fts.bash"),
        (Shell::Zsh, "_fts"),
        (Shell::Fish, "fts.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "fts", &mut buf);
        write(&a.out.join("completions").join(file), &buf)?;
    }
    Ok(())
}
