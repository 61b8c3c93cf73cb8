//! `ferry completions` and `ferry man`: shell completions and manual pages generated from the
//! command-line definition itself, so they never drift from what the binary accepts.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;
use clap_mangen::Man;

/// Write the completion script for `shell` to standard output.
pub(crate) fn completions(shell: Shell, mut cmd: Command) -> anyhow::Result<()> {
    let name = cmd.get_name().to_string();
    // clap_complete panics when its writer fails; a Vec cannot, and a reader that leaves
    // early (`| head`) is then no panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    print(&script)
}

/// `bytes` on standard output; a reader that has gone (a closed pipe) is no error.
fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Without `dir`: one page on standard output, `ferry(1)` followed by a section per
/// subcommand with its synopsis and options (what `ferry man | man -l -` shows). With `dir`:
/// `ferry.1` and one `ferry-VERB.1` per subcommand, as packagers install them.
pub(crate) fn man(mut cmd: Command, dir: Option<&Path>) -> anyhow::Result<()> {
    // `help` is clap's own; its page would say nothing the others don't.
    cmd = cmd.disable_help_subcommand(true);
    // Gives every subcommand its full name ("ferry serve"), used in their synopses.
    cmd.build();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
        return Ok(());
    }
    let mut page = Vec::new();
    Man::new(cmd.clone()).render(&mut page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        writeln!(page, ".SH \"{}\"", name.to_uppercase())?;
        let man = Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_description_section(&mut part)?;
        man.render_synopsis_section(&mut part)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut part)?;
        }
        page.extend(demoted(&part));
    }
    print(&page)
}

/// `roff` with its section headings (`.SH`) turned into subsection headings (`.SS`), to nest a
/// subcommand's page inside the section that names it. Text lines starting with a period are
/// escaped by the roff writer (`\&.`), so only real requests match.
fn demoted(roff: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(roff.len());
    for line in roff.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(b".SH ") {
            Some(rest) => {
                out.extend_from_slice(b".SS ");
                out.extend_from_slice(rest);
            }
            None => out.extend_from_slice(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::demoted;

    #[test]
    fn only_section_requests_are_demoted() {
        let roff = b".SH OPTIONS\n\\&.SH not a request\n.TP\ntext .SH inside\n";
        assert_eq!(
            demoted(roff),
            b".SS OPTIONS\n\\&.SH not a request\n.TP\ntext .SH inside\n".to_vec()
        );
    }
}
