//! `provflow graph`: a process's task graph as Mermaid or DOT.
//!
//! Both languages draw the same graph: one node per task (`t<index>` in the IR's topological
//! order), solid edges from a dependency to the task that waits for it, dashed edges labelled
//! with the response code for generated tasks, and dashed `undo` / `recovery` edges. Manual
//! tasks are parallelograms, conditional tasks have a dashed border, tasks required for
//! completion a bold one. Output depends only on the IR, so it is deterministic.
use provflow_ir::{Bundle, Process, Task, TaskAction};

/// An edge of the drawing, shared by both languages.
enum Edge<'p> {
    DependsOn,
    Generates(&'p str),
    Undo,
    Recovery,
}

/// Every edge as `(from, to, kind)`, in task order then by kind: depends_on, responses, undo,
/// recovery.
fn edges(process: &Process) -> Vec<(usize, usize, Edge<'_>)> {
    let mut edges = Vec::new();
    for (i, task) in process.tasks.iter().enumerate() {
        edges.extend(task.depends_on.iter().map(|&d| (d, i, Edge::DependsOn)));
        for response in &task.responses {
            edges.extend(response.generate.iter().map(|&g| (i, g, Edge::Generates(response.code.as_str()))));
        }
        edges.extend(task.undo.iter().map(|&u| (i, u, Edge::Undo)));
        edges.extend(task.recovery.iter().map(|&r| (i, r, Edge::Recovery)));
    }
    edges
}

fn is_manual(task: &Task) -> bool {
    matches!(task.action, TaskAction::Manual { .. })
}

/// Mermaid has no string escapes, only HTML-like entity codes; `#` goes first because it starts
/// one.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn mermaid(_bundle: &Bundle, process: &Process) -> String {
    let mut out = String::from("flowchart TD\n");
    out.push_str(&format!("  %% process: {}\n", process.name.replace('\n', " ")));
    for (i, task) in process.tasks.iter().enumerate() {
        let label = mermaid_text(&task.name);
        if is_manual(task) {
            out.push_str(&format!("  t{i}[/\"{label}\"/]\n"));
        } else {
            out.push_str(&format!("  t{i}[\"{label}\"]\n"));
        }
    }
    for (from, to, edge) in edges(process) {
        match edge {
            Edge::DependsOn => out.push_str(&format!("  t{from} --> t{to}\n")),
            Edge::Generates(code) => out.push_str(&format!("  t{from} -.->|\"{}\"| t{to}\n", mermaid_text(code))),
            Edge::Undo => out.push_str(&format!("  t{from} -.->|undo| t{to}\n")),
            Edge::Recovery => out.push_str(&format!("  t{from} -.->|recovery| t{to}\n")),
        }
    }
    let class = |out: &mut String, name: &str, pick: fn(&Task) -> bool| {
        let ids: Vec<String> =
            process.tasks.iter().enumerate().filter(|(_, t)| pick(t)).map(|(i, _)| format!("t{i}")).collect();
        if !ids.is_empty() {
            out.push_str(&format!("  class {} {name}\n", ids.join(",")));
        }
    };
    class(&mut out, "manual", is_manual);
    class(&mut out, "conditional", |t| t.conditional);
    class(&mut out, "required", |t| t.required_for_completion);
    out.push_str("  classDef manual fill:#fff4d6,stroke:#b8860b\n");
    out.push_str("  classDef conditional stroke-dasharray:5 5\n");
    out.push_str("  classDef required stroke-width:3px,font-weight:bold\n");
    out
}

/// A DOT quoted string: `"` and `\` escaped, line breaks as DOT's `\n`.
fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn dot(_bundle: &Bundle, process: &Process) -> String {
    let mut out = format!("digraph {} {{\n", dot_string(&process.name));
    out.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\"];\n");
    for (i, task) in process.tasks.iter().enumerate() {
        let mut attrs = vec![format!("label={}", dot_string(&task.name))];
        if is_manual(task) {
            attrs.push("shape=parallelogram".into());
            attrs.push("fillcolor=\"#fff4d6\"".into());
        }
        let mut style = Vec::new();
        if is_manual(task) {
            style.push("filled");
        }
        if task.conditional {
            style.push("dashed");
        }
        if task.required_for_completion {
            style.push("bold");
            attrs.push("penwidth=2".into());
        }
        if !style.is_empty() {
            attrs.push(format!("style=\"{}\"", style.join(",")));
        }
        out.push_str(&format!("  t{i} [{}];\n", attrs.join(", ")));
    }
    for (from, to, edge) in edges(process) {
        let attrs = match edge {
            Edge::DependsOn => String::new(),
            Edge::Generates(code) => format!(" [style=dashed, label={}]", dot_string(code)),
            Edge::Undo => " [style=dashed, color=\"#b22222\", label=\"undo\"]".into(),
            Edge::Recovery => " [style=dashed, color=\"#1e90ff\", label=\"recovery\"]".into(),
        };
        out.push_str(&format!("  t{from} -> t{to}{attrs};\n"));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use provflow_ir as ir;
    use std::collections::BTreeMap;

    fn task(name: &str, action: TaskAction) -> Task {
        Task {
            name: name.into(),
            description: None,
            duration_minutes: None,
            conditional: false,
            condition: None,
            required_for_completion: false,
            effect: ir::Effect::None,
            disable_manual_insert: false,
            allow_cancellation_while_pending: false,
            allow_multiple_instances: false,
            retry: None,
            depends_on: Vec::new(),
            responses: Vec::new(),
            undo: Vec::new(),
            recovery: Vec::new(),
            complete_on_recovery: false,
            status_map: BTreeMap::new(),
            notify: BTreeMap::new(),
            action,
            updates_field: None,
            location: ir::Location::default(),
        }
    }

    fn adapter() -> TaskAction {
        TaskAction::Adapter(ir::Adapter { query: 0, map: Vec::new() })
    }

    fn sample() -> (Bundle, Process) {
        let mut create = task("Create \"DB\" User", adapter());
        create.required_for_completion = true;
        create.responses = vec![ir::Response {
            code: "SUCCESS".into(),
            description: None,
            status: ir::TaskStatus::Completed,
            generate: vec![2],
        }];
        create.undo = vec![3];
        create.recovery = vec![1];
        let manual = task("Manual Provisioning", TaskAction::Manual { assignee: None });
        let mut enable = task("Enable User", adapter());
        enable.conditional = true;
        enable.depends_on = vec![0];
        let mut delete = task("Delete\\User", adapter());
        delete.conditional = true;
        let process = Process {
            name: "DBUM \"Account\"".into(),
            process_type: ir::ProcessType::Provisioning,
            object: "DBUM Account".into(),
            default: true,
            target: 0,
            form: ir::Form { table: None, auto_save: false, fields: Vec::new(), child_tables: Vec::new() },
            tasks: vec![create, manual, enable, delete],
            triggers: Vec::new(),
            recon: None,
            location: ir::Location::default(),
        };
        let bundle = Bundle {
            ir_version: ir::IR_VERSION,
            hash: String::new(),
            targets: Vec::new(),
            query_sets: Vec::new(),
            processes: vec![process.clone()],
            events: Vec::new(),
            templates: Vec::new(),
            user_schema: ir::UserSchema { name: None, attributes: Vec::new() },
            scenarios: Vec::new(),
        };
        (bundle, process)
    }

    #[test]
    fn mermaid_draws_every_relation() {
        let (bundle, process) = sample();
        let expected = r##"flowchart TD
  %% process: DBUM "Account"
  t0["Create #quot;DB#quot; User"]
  t1[/"Manual Provisioning"/]
  t2["Enable User"]
  t3["Delete\User"]
  t0 -.->|"SUCCESS"| t2
  t0 -.->|undo| t3
  t0 -.->|recovery| t1
  t0 --> t2
  class t1 manual
  class t2,t3 conditional
  class t0 required
  classDef manual fill:#fff4d6,stroke:#b8860b
  classDef conditional stroke-dasharray:5 5
  classDef required stroke-width:3px,font-weight:bold
"##;
        assert_eq!(mermaid(&bundle, &process), expected);
    }

    #[test]
    fn dot_draws_every_relation_with_escaping() {
        let (bundle, process) = sample();
        let expected = r##"digraph "DBUM \"Account\"" {
  rankdir=TB;
  node [shape=box, fontname="Helvetica"];
  edge [fontname="Helvetica"];
  t0 [label="Create \"DB\" User", penwidth=2, style="bold"];
  t1 [label="Manual Provisioning", shape=parallelogram, fillcolor="#fff4d6", style="filled"];
  t2 [label="Enable User", style="dashed"];
  t3 [label="Delete\\User", style="dashed"];
  t0 -> t2 [style=dashed, label="SUCCESS"];
  t0 -> t3 [style=dashed, color="#b22222", label="undo"];
  t0 -> t1 [style=dashed, color="#1e90ff", label="recovery"];
  t0 -> t2;
}
"##;
        assert_eq!(dot(&bundle, &process), expected);
    }

    #[test]
    fn mermaid_escapes_entities_and_line_breaks() {
        assert_eq!(mermaid_text("a#b\"<c>\nd"), "a#35;b#quot;#lt;c#gt; d");
        assert_eq!(dot_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
