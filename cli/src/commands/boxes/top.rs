//! `top`: the processes of a box's workload, as Docker prints them (a column per title, the
//! last one, CMD, as wide as it is).

use std::io::Write;

use a3s_runtime::engine::Engine;

use super::args::TopArgs;
use crate::commands::EngineResult;
use crate::ExitStatus;

pub(super) fn top(engine: &Engine, a: &TopArgs) -> anyhow::Result<ExitStatus> {
    let (titles, rows) = engine.top(&a.r#box, &a.ps_args).engine()?;
    let mut out = std::io::stdout().lock();
    out.write_all(table(&titles, &rows).as_bytes())?;
    Ok(ExitStatus::Success)
}

fn table(titles: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..titles.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&titles[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!(
                    "{c:<w$}   ",
                    w = widths.get(i).copied().unwrap_or(0)
                ));
            }
        }
        l.push('\n');
        l
    };
    let mut s = line(titles);
    for r in rows {
        s.push_str(&line(r));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let t: Vec<String> = ["UID", "PID", "CMD"].map(String::from).to_vec();
        let rows = vec![
            ["root", "7", "sleep 300"].map(String::from).to_vec(),
            ["nobody", "1234", "sh -c x"].map(String::from).to_vec(),
        ];
        assert_eq!(
            table(&t, &rows),
            "UID      PID    CMD\nroot     7      sleep 300\nnobody   1234   sh -c x\n"
        );
    }
}
