//! The side-by-side table.

use super::Column;

/// Units where a larger number is better; for the others (times) smaller is better.
fn higher_is_better(unit: &str) -> bool {
    unit.ends_with("/s")
}

fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Renders the columns as a table: one row per figure, for each column its median with
/// [min-max] and its floor, then the ratio of the columns `ratio` (a vs b, > 1 means a is
/// better).
pub fn render(cols: &[Column], ratio: Option<(usize, usize)>) -> String {
    let mut names: Vec<(String, String)> = Vec::new();
    for c in cols {
        for f in &c.figures {
            if !names.iter().any(|(n, _)| *n == f.name) {
                names.push((f.name.clone(), f.unit.clone()));
            }
        }
    }
    let mut header = vec!["figure".to_string(), "unit".to_string()];
    for c in cols {
        let title = match &c.device {
            Some(d) => format!("{} ({d})", c.name),
            None => c.name.clone(),
        };
        header.push(title);
        header.push("floor".into());
    }
    if let Some((a, b)) = ratio {
        header.push(format!("{} vs {}", cols[a].name, cols[b].name));
    }
    let mut rows = vec![header];
    for (name, unit) in &names {
        let mut row = vec![name.clone(), unit.clone()];
        let mut medians = Vec::new();
        for c in cols {
            match c.figures.iter().find(|f| &f.name == name) {
                Some(f) => {
                    let s = f.spread;
                    let mut cell = if s.min == s.max {
                        fmt(s.median)
                    } else {
                        format!("{} [{}-{}]", fmt(s.median), fmt(s.min), fmt(s.max))
                    };
                    if let Some(w) = f.workgroups {
                        cell += &format!(" ({w} wg)");
                    }
                    row.push(cell);
                    row.push(f.floor.map(fmt).unwrap_or_else(|| "-".into()));
                    medians.push(Some(s.median));
                }
                None => {
                    row.push("-".into());
                    row.push("-".into());
                    medians.push(None);
                }
            }
        }
        if let Some((a, b)) = ratio {
            row.push(match (medians[a], medians[b]) {
                (Some(x), Some(y)) if x > 0.0 && y > 0.0 => {
                    let r = if higher_is_better(unit) { x / y } else { y / x };
                    format!("{r:.2}x")
                }
                _ => "-".into(),
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let pad = widths[j] - c.chars().count();
                if j < 2 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
        if i == 0 {
            out += &"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1));
            out.push('\n');
        }
    }
    if cols
        .iter()
        .any(|c| c.figures.iter().any(|f| f.floor.is_some()))
    {
        out += "floor: the best the hardware allows: the figure's FLOPs at the column's best \
                matmul rate and, for a step's ops, its bytes (each input read and each output \
                written once) at the column's bandwidth, whichever takes longer; data that \
                stays in cache can beat the bandwidth bound; for the host time per step, the \
                main-thread CPU time the device API and driver alone take to encode and submit \
                as many kernel launches\n";
    }
    if cols
        .iter()
        .any(|c| c.figures.iter().any(|f| f.workgroups.is_some()))
    {
        out += "wg: workgroups of one call of the op (a GPU with N compute units idles where \
                this is well under N)\n";
    }
    // Rows of one name line up across columns, but how they were timed may differ.
    for c in cols {
        if let Some(how) = &c.breakdown {
            out += &format!("step breakdown ({}): {how}\n", c.name);
        }
    }
    out
}
