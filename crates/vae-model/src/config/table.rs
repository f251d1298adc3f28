//! The plan as a table, as PyTorch prints a module: every layer's kind, maps and parameters.

use std::fmt;

use super::{LayerKind, LayerPlan, LayerSpec};

fn kind(l: &LayerSpec) -> String {
    let act = l.activation.map_or(String::new(), |a| {
        let name =
            serde_json::to_value(a).map_or(String::new(), |v| v.as_str().unwrap_or("").to_string());
        format!(" {name}")
    });
    match l.kind {
        LayerKind::Dense => format!("dense{act}"),
        LayerKind::Conv(c) => format!("conv k{} s{} p{}{act}", c.kernel, c.stride, c.padding),
        LayerKind::ConvTranspose(c) => format!(
            "conv-transpose k{} s{} p{} op{}{act}",
            c.kernel, c.stride, c.padding, c.output_padding
        ),
    }
}

fn map(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

fn maps(l: &LayerSpec) -> (String, String) {
    match l.kind {
        LayerKind::Dense => (l.fan_in.to_string(), l.fan_out.to_string()),
        LayerKind::Conv(c) | LayerKind::ConvTranspose(c) => (map(&c.input), map(&c.output)),
    }
}

/// One row per layer in `state_dict` order (name, kind and activation, input, output, weight shape, parameters),
/// then the total.
///
/// ```
/// let table = vae_model::VaeConfig::mnist().plan().to_string();
/// assert!(table.lines().nth(1).unwrap().starts_with("encoder.hidden.0"));
/// assert!(table.ends_with("total 652824 parameters\n"));
/// ```
impl fmt::Display for LayerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["layer", "kind", "in", "out", "weight", "parameters"];
        let mut rows = vec![header.map(String::from)];
        for l in self.layers() {
            let (input, output) = maps(l);
            rows.push([
                l.name(),
                kind(l),
                input,
                output,
                format!("{:?}", l.weight_shape()),
                l.num_parameters().to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        let total: usize = self.layers().map(LayerSpec::num_parameters).sum();
        writeln!(f, "total {total} parameters")
    }
}
