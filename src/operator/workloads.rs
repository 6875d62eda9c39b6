//! Which pods ask for which GPU resource: Kubernetes `Deployment` (or `Pod`) manifests, the
//! subset that matters here (replicas, the model's name, `nodeSelector`, one container's
//! `resources.limits`), read from a multi-document YAML file and written back.
//!
//! A file as people keep it (a Deployment with its Service, ConfigMap, autoscaler, ...) is
//! read whole: other kinds, and Deployments or Pods that ask for no `nvidia.com/` resource,
//! are skipped with a note. Within a Deployment or Pod, the fields of the Kubernetes API that
//! do not change GPU use (`image`, `env`, probes, volumes, affinity, ...) are accepted and
//! ignored; any other key is an error (a typo in `resources` must not pass silently).
//!
//! The model a pod serves, first that names a model profile (see [`model_candidates`]): the
//! annotation `gpushare/model` (authoritative when present), the label
//! `app.kubernetes.io/name`, the label `app`, the value of a model flag in a container's
//! command or args (`--model X`, `--model=X`, `--served-model-name X`, `vllm serve X`; also
//! its last path segment in lower case), the object's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use super::yaml::{self, At, Metadata, Source};
use crate::error::InputError;

/// Label naming the model a pod serves.
pub const MODEL_LABEL: &str = "app.kubernetes.io/name";
/// Annotation naming the model profile a pod serves; it wins over every other hint.
pub const MODEL_ANNOTATION: &str = "gpushare/model";
/// The common short label that also names an app, tried after [`MODEL_LABEL`].
pub const APP_LABEL: &str = "app";
/// Label that tells two Deployments of one model apart (their selectors must not overlap).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The node label every node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Pods of one model that ask for one GPU resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Object name.
    pub name: String,
    /// Model profile name: the first of `model_candidates` until an import picks the first
    /// that names a known profile ([`Workloads::pick_models`]).
    pub model: String,
    /// The names the object gives its model, in the order tried: (name, where it was found).
    /// Empty for workloads built in code (export).
    pub model_candidates: Vec<(String, String)>,
    /// `Deployment` or `Pod`.
    pub kind: String,
    /// Pods.
    pub replicas: u32,
    /// `nodeSelector` of the pods.
    pub node_selector: BTreeMap<String, String>,
    /// The extended resource asked for, e.g. `nvidia.com/mig-3g.40gb`.
    pub resource: String,
    /// How many units of it each pod asks for.
    pub count: u32,
    /// Where the object starts in its file.
    pub at: At,
}

/// The workloads file.
#[derive(Clone, Debug, PartialEq)]
pub struct Workloads {
    /// Where it came from.
    pub origin: PathBuf,
    /// The objects, in file order.
    pub items: Vec<Workload>,
}

/// The header every Kubernetes object has: enough to tell what to skip.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<HeaderMeta>,
}

#[derive(Deserialize)]
struct HeaderMeta {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawObject {
    api_version: String,
    kind: Spanned<String>,
    metadata: Metadata,
    spec: Spanned<RawSpec>,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// Declares a pod-spec struct: `nodeSelector` and `containers` are read, the other pod-spec
/// fields are accepted and ignored, anything else is an error; `$extra` adds fields.
macro_rules! pod_spec {
    ($(#[$doc:meta])* $name:ident { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct $name {
            $($extra)*
            #[serde(default)]
            node_selector: Option<BTreeMap<String, String>>,
            #[serde(default)]
            volumes: Option<IgnoredAny>,
            #[serde(default)]
            tolerations: Option<IgnoredAny>,
            #[serde(default)]
            image_pull_secrets: Option<IgnoredAny>,
            #[serde(default)]
            service_account_name: Option<IgnoredAny>,
            #[serde(default)]
            runtime_class_name: Option<IgnoredAny>,
            #[serde(default)]
            priority_class_name: Option<IgnoredAny>,
            #[serde(default)]
            termination_grace_period_seconds: Option<IgnoredAny>,
            #[serde(default)]
            restart_policy: Option<IgnoredAny>,
            #[serde(default)]
            init_containers: Option<IgnoredAny>,
            #[serde(default)]
            security_context: Option<IgnoredAny>,
            #[serde(default)]
            affinity: Option<IgnoredAny>,
            #[serde(default)]
            active_deadline_seconds: Option<IgnoredAny>,
            #[serde(default)]
            automount_service_account_token: Option<IgnoredAny>,
            #[serde(default)]
            dns_config: Option<IgnoredAny>,
            #[serde(default)]
            dns_policy: Option<IgnoredAny>,
            #[serde(default)]
            enable_service_links: Option<IgnoredAny>,
            #[serde(default)]
            ephemeral_containers: Option<IgnoredAny>,
            #[serde(default)]
            host_aliases: Option<IgnoredAny>,
            #[serde(default, rename = "hostIPC")]
            host_ipc: Option<IgnoredAny>,
            #[serde(default)]
            host_network: Option<IgnoredAny>,
            #[serde(default, rename = "hostPID")]
            host_pid: Option<IgnoredAny>,
            #[serde(default)]
            host_users: Option<IgnoredAny>,
            #[serde(default)]
            hostname: Option<IgnoredAny>,
            #[serde(default)]
            node_name: Option<IgnoredAny>,
            #[serde(default)]
            os: Option<IgnoredAny>,
            #[serde(default)]
            overhead: Option<IgnoredAny>,
            #[serde(default)]
            preemption_policy: Option<IgnoredAny>,
            #[serde(default)]
            priority: Option<IgnoredAny>,
            #[serde(default)]
            readiness_gates: Option<IgnoredAny>,
            #[serde(default)]
            resource_claims: Option<IgnoredAny>,
            #[serde(default)]
            scheduler_name: Option<IgnoredAny>,
            #[serde(default)]
            scheduling_gates: Option<IgnoredAny>,
            #[serde(default)]
            service_account: Option<IgnoredAny>,
            #[serde(default, rename = "setHostnameAsFQDN")]
            set_hostname_as_fqdn: Option<IgnoredAny>,
            #[serde(default)]
            share_process_namespace: Option<IgnoredAny>,
            #[serde(default)]
            subdomain: Option<IgnoredAny>,
            #[serde(default)]
            topology_spread_constraints: Option<IgnoredAny>,
        }
    };
}

pod_spec! {
    /// The spec of a Deployment or of a Pod (one struct: which fields belong to which kind is
    /// checked after parsing).
    RawSpec {
        #[serde(default)]
        replicas: Option<u32>,
        #[serde(default)]
        selector: Option<IgnoredAny>,
        #[serde(default)]
        template: Option<RawTemplate>,
        #[serde(default)]
        strategy: Option<IgnoredAny>,
        #[serde(default)]
        revision_history_limit: Option<IgnoredAny>,
        #[serde(default)]
        progress_deadline_seconds: Option<IgnoredAny>,
        #[serde(default)]
        min_ready_seconds: Option<IgnoredAny>,
        #[serde(default)]
        paused: Option<IgnoredAny>,
        #[serde(default)]
        containers: Option<Vec<Spanned<RawContainer>>>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    metadata: Option<Metadata>,
    spec: RawPodSpec,
}

pod_spec! {
    /// A Deployment's pod template spec.
    RawPodSpec {
        containers: Vec<Spanned<RawContainer>>,
    }
}

/// A container: `resources` matters, and `command` and `args` may name the model; the other
/// fields of the Kubernetes API are accepted and ignored.
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContainer {
    name: String,
    #[serde(default)]
    resources: Option<RawResources>,
    #[serde(default)]
    image: Option<IgnoredAny>,
    #[serde(default)]
    image_pull_policy: Option<IgnoredAny>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    lifecycle: Option<IgnoredAny>,
    #[serde(default)]
    resize_policy: Option<IgnoredAny>,
    #[serde(default)]
    restart_policy: Option<IgnoredAny>,
    #[serde(default)]
    stdin: Option<IgnoredAny>,
    #[serde(default)]
    stdin_once: Option<IgnoredAny>,
    #[serde(default)]
    termination_message_path: Option<IgnoredAny>,
    #[serde(default)]
    termination_message_policy: Option<IgnoredAny>,
    #[serde(default)]
    tty: Option<IgnoredAny>,
    #[serde(default)]
    volume_devices: Option<IgnoredAny>,
    #[serde(default)]
    env: Option<IgnoredAny>,
    #[serde(default)]
    env_from: Option<IgnoredAny>,
    #[serde(default)]
    ports: Option<IgnoredAny>,
    #[serde(default)]
    volume_mounts: Option<IgnoredAny>,
    #[serde(default)]
    liveness_probe: Option<IgnoredAny>,
    #[serde(default)]
    readiness_probe: Option<IgnoredAny>,
    #[serde(default)]
    startup_probe: Option<IgnoredAny>,
    #[serde(default)]
    security_context: Option<IgnoredAny>,
    #[serde(default)]
    working_dir: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    limits: Option<BTreeMap<String, Spanned<Quantity>>>,
    #[serde(default)]
    requests: Option<BTreeMap<String, Spanned<Quantity>>>,
    #[serde(default)]
    #[allow(dead_code)]
    claims: Option<IgnoredAny>,
}

/// A Kubernetes quantity: for GPU resources, a whole number (written as a number or a string).
#[derive(Clone, Debug, PartialEq)]
enum Quantity {
    Whole(u32),
    Other(String),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a quantity such as 1 or \"1\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(u32::try_from(v).map_or(Quantity::Other(v.to_string()), Quantity::Whole))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(u32::try_from(v).map_or(Quantity::Other(v.to_string()), Quantity::Whole))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity::Other(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(v.trim()
                    .parse::<u32>()
                    .map_or(Quantity::Other(v.to_string()), Quantity::Whole))
            }
        }
        d.deserialize_any(V)
    }
}

/// Split a multi-document YAML text at `---` lines: (text, line offset) per document.
fn documents(text: &str) -> Vec<(String, u64)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 0u64;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((std::mem::take(&mut cur), start));
            start = i as u64 + 1;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((cur, start));
    docs.into_iter()
        .filter(|(t, _)| {
            t.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

impl Workloads {
    /// Read a workloads file; `notes` gets what was skipped.
    pub fn load(path: &Path, notes: &mut Vec<String>) -> Result<Workloads, InputError> {
        let text = crate::config::read(path)?;
        Self::from_text(path, &text, notes)
    }

    /// Parse the text of [`Self::load`]: every Deployment and Pod that asks for an
    /// `nvidia.com/` resource; the other objects are skipped, each named in one note.
    pub fn from_text(
        path: &Path,
        text: &str,
        notes: &mut Vec<String>,
    ) -> Result<Workloads, InputError> {
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        let docs = documents(text);
        for (i, (doc, offset)) in docs.iter().enumerate() {
            let src = Source {
                path,
                text: doc,
                line_offset: *offset,
                within: if docs.len() > 1 {
                    format!("document {}", i + 1)
                } else {
                    String::new()
                },
            };
            let header: Header = serde_saphyr::from_str(doc).map_err(|_| {
                // The strict parse names the line of what is wrong.
                match src.parse::<RawObject>() {
                    Err(e) => e,
                    Ok(_) => src.error(At::default(), "", "not a Kubernetes object"),
                }
            })?;
            let name = header.metadata.map(|m| m.name).unwrap_or_default();
            let workload_kind = matches!(
                (header.kind.as_str(), header.api_version.as_str()),
                ("Deployment", "apps/v1") | ("Pod", "v1")
            );
            if !workload_kind {
                skipped.push(format!("{} {name}", header.kind));
                continue;
            }
            match Self::object(&src)? {
                Some(w) => items.push(w),
                None => skipped.push(format!("{} {name} (no nvidia.com/ resource)", header.kind)),
            }
        }
        if !skipped.is_empty() {
            notes.push(format!(
                "{}: skipped {} object{} that ask{} for no GPU: {}",
                path.display(),
                skipped.len(),
                if skipped.len() == 1 { "" } else { "s" },
                if skipped.len() == 1 { "s" } else { "" },
                skipped.join(", ")
            ));
        }
        if items.is_empty() {
            return Err(yaml::located(
                path,
                At::default(),
                "",
                format!(
                    "no Deployment (apps/v1) or Pod (v1) that asks for an nvidia.com/ resource in resources.limits{}",
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!("; found only {}", skipped.join(", "))
                    }
                ),
            ));
        }
        Ok(Workloads {
            origin: path.to_path_buf(),
            items,
        })
    }

    /// Set each workload's model to the first of its candidates that `known` accepts (a
    /// profile name); an error names the object, what was tried and how to say it.
    pub fn pick_models(
        &mut self,
        known: &dyn Fn(&str) -> bool,
        allowed: &str,
    ) -> Result<(), InputError> {
        for w in &mut self.items {
            if w.model_candidates.is_empty() {
                continue;
            }
            let authoritative = w.model_candidates[0].1 == format!("annotation {MODEL_ANNOTATION}");
            let pick = if authoritative {
                Some(&w.model_candidates[0])
            } else {
                w.model_candidates.iter().find(|(n, _)| known(n))
            };
            match pick {
                Some((n, _)) if known(n) => w.model = n.clone(),
                _ => {
                    let tried: Vec<String> = w
                        .model_candidates
                        .iter()
                        .map(|(n, from)| format!("`{n}` ({from})"))
                        .collect();
                    return Err(yaml::located(
                        &self.origin,
                        w.at,
                        "",
                        format!(
                            "{} {}: no model profile among {}; expected {allowed}. Name it on the pod template with the annotation `{MODEL_ANNOTATION}: <profile>` (or the label {MODEL_LABEL})",
                            w.kind,
                            w.name,
                            tried.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One Deployment or Pod; `None` when no container asks for an `nvidia.com/` resource.
    fn object(src: &Source) -> Result<Option<Workload>, InputError> {
        let raw: RawObject = src.parse()?;
        let kind = raw.kind.value.as_str();
        let at = At::of(&raw.spec).offset(src.line_offset);
        let spec_at = At::of(&raw.spec);
        let spec = raw.spec.value;
        let (replicas, template_meta, containers, node_selector, cf) = match (
            kind,
            raw.api_version.as_str(),
        ) {
            ("Deployment", "apps/v1") => {
                if spec.containers.is_some() {
                    return Err(src.error(
                        spec_at,
                        "spec.containers",
                        "a Deployment's containers go under spec.template.spec",
                    ));
                }
                let Some(t) = spec.template else {
                    return Err(src.error(
                        spec_at,
                        "spec.template",
                        "missing: a Deployment needs a pod template",
                    ));
                };
                (
                    spec.replicas.unwrap_or(1),
                    t.metadata,
                    t.spec.containers,
                    t.spec.node_selector,
                    "spec.template.spec.containers",
                )
            }
            ("Pod", "v1") => {
                if spec.template.is_some() || spec.replicas.is_some() {
                    return Err(src.error(
                        spec_at,
                        "spec",
                        "a Pod has no template or replicas: use a Deployment (apps/v1) for several pods",
                    ));
                }
                let Some(c) = spec.containers else {
                    return Err(src.error(
                        spec_at,
                        "spec.containers",
                        "missing: a Pod needs containers",
                    ));
                };
                (1, None, c, spec.node_selector, "spec.containers")
            }
            (k, v) => {
                return Err(src.error(
                    At::of(&raw.kind),
                    "kind",
                    format!("{v} {k}: expected a Deployment (apps/v1) or a Pod (v1)"),
                ));
            }
        };
        let args: Vec<&str> = containers
            .iter()
            .flat_map(|c| {
                let c = &c.value;
                c.command.iter().chain(c.args.iter()).flatten()
            })
            .map(String::as_str)
            .collect();
        let candidates = model_candidates(&raw.metadata, template_meta.as_ref(), &args);
        let mut gpu: Vec<(String, u32, At, String)> = Vec::new();
        for (ci, c) in containers.iter().enumerate() {
            let Some(res) = &c.value.resources else {
                continue;
            };
            let f = format!("{cf}[{ci}].resources");
            let limits = res.limits.clone().unwrap_or_default();
            if let Some(req) = &res.requests {
                for (k, q) in req.iter().filter(|(k, _)| k.starts_with("nvidia.com/")) {
                    if limits.get(k).map(|l| &l.value) != Some(&q.value) {
                        return Err(src.error(
                            At::of(q),
                            &format!("{f}.requests.{k}"),
                            "an extended resource's request must equal its limit (Kubernetes): set it under limits",
                        ));
                    }
                }
            }
            for (k, q) in limits.iter().filter(|(k, _)| k.starts_with("nvidia.com/")) {
                let n = match &q.value {
                    Quantity::Whole(n) if *n >= 1 => *n,
                    other => {
                        return Err(src.error(
                            At::of(q),
                            &format!("{f}.limits.{k}"),
                            format!("{other:?}: expected a whole number of devices >= 1"),
                        ));
                    }
                };
                gpu.push((k.clone(), n, At::of(q), format!("{f}.limits.{k}")));
            }
        }
        let (resource, count, _, _) = match gpu.len() {
            1 => gpu.remove(0),
            0 => return Ok(None),
            _ => {
                let names: Vec<&str> = gpu.iter().map(|g| g.0.as_str()).collect();
                return Err(src.error(
                    gpu[1].2,
                    &gpu[1].3,
                    format!(
                        "{}: a pod may use one GPU resource in the simulation (one partition per replica)",
                        names.join(" and ")
                    ),
                ));
            }
        };
        Ok(Some(Workload {
            name: raw.metadata.name.clone(),
            model: candidates
                .first()
                .map(|c| c.0.clone())
                .unwrap_or_else(|| raw.metadata.name.clone()),
            model_candidates: candidates,
            kind: kind.to_string(),
            replicas,
            node_selector: node_selector.unwrap_or_default(),
            resource,
            count,
            at,
        }))
    }
}

/// The names an object gives the model its pods serve, in the order tried, each with where it
/// was found: the annotation [`MODEL_ANNOTATION`] (alone: it is authoritative), the labels
/// [`MODEL_LABEL`] and [`APP_LABEL`] (pod template first, then the object), a model flag in
/// the containers' command and args with its last path segment in lower case (a Hugging Face
/// id such as `nvidia/Foo-8B` also tries `foo-8b`), the object's name.
pub fn model_candidates(
    object: &Metadata,
    template: Option<&Metadata>,
    args: &[&str],
) -> Vec<(String, String)> {
    let metas: Vec<&Metadata> = template.into_iter().chain([object]).collect();
    for m in &metas {
        if let Some(a) = m.annotations.get(MODEL_ANNOTATION) {
            return vec![(a.clone(), format!("annotation {MODEL_ANNOTATION}"))];
        }
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |n: &str, from: String| {
        if !n.is_empty() && !out.iter().any(|(o, _)| o == n) {
            out.push((n.to_string(), from));
        }
    };
    for label in [MODEL_LABEL, APP_LABEL] {
        for m in &metas {
            if let Some(v) = m.labels.get(label) {
                add(v, format!("label {label}"));
            }
        }
    }
    // Arguments may come one per item or as one shell line (`sh -c "vllm serve ..."`).
    let words: Vec<&str> = args.iter().flat_map(|a| a.split_whitespace()).collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_matches(|c| c == '"' || c == '\'');
        let value = match w.split_once('=') {
            Some(("--model" | "--served-model-name", v)) => Some(v),
            _ if matches!(w, "--model" | "--served-model-name") => words.get(i + 1).copied(),
            _ if w == "serve" && i > 0 && words[i - 1].ends_with("vllm") => {
                words.get(i + 1).copied().filter(|v| !v.starts_with('-'))
            }
            _ => None,
        };
        if let Some(v) = value {
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            add(v, "the model flag in the container's args".into());
            if let Some(last) = v.rsplit('/').next() {
                add(
                    &last.to_ascii_lowercase(),
                    "the model flag's last path segment".into(),
                );
            }
        }
    }
    add(&object.name, "the object's name".into());
    out
}

/// A Deployment as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutDeployment {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: OutSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutSpec {
    replicas: u32,
    selector: OutSelector,
    template: OutTemplate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutSelector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct OutTemplate {
    metadata: Metadata,
    spec: OutPodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutPodSpec {
    node_selector: BTreeMap<String, String>,
    containers: Vec<OutContainer>,
}

#[derive(Serialize)]
struct OutContainer {
    name: String,
    image: String,
    resources: OutResources,
}

#[derive(Serialize)]
struct OutResources {
    limits: BTreeMap<String, u32>,
}

/// Placeholder image: gpushare does not know the serving images.
pub const IMAGE_PLACEHOLDER: &str = "REPLACE-WITH-SERVING-IMAGE";

/// Text of `items` as a multi-document YAML file of Deployments, each pinned to its node.
pub fn write(items: &[Workload], namespace: &str) -> String {
    let mut out = String::new();
    for w in items {
        let labels: BTreeMap<String, String> = [
            (MODEL_LABEL.to_string(), w.model.clone()),
            (INSTANCE_LABEL.to_string(), w.name.clone()),
        ]
        .into_iter()
        .collect();
        let container = w
            .model
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .to_ascii_lowercase();
        let d = OutDeployment {
            api_version: "apps/v1",
            kind: "Deployment",
            metadata: Metadata {
                name: w.name.clone(),
                namespace: Some(namespace.to_string()),
                labels: labels.clone(),
                ..Metadata::default()
            },
            spec: OutSpec {
                replicas: w.replicas,
                selector: OutSelector {
                    match_labels: labels.clone(),
                },
                template: OutTemplate {
                    metadata: Metadata {
                        labels,
                        ..Metadata::default()
                    },
                    spec: OutPodSpec {
                        node_selector: w.node_selector.clone(),
                        containers: vec![OutContainer {
                            name: container,
                            image: IMAGE_PLACEHOLDER.into(),
                            resources: OutResources {
                                limits: [(w.resource.clone(), w.count)].into_iter().collect(),
                            },
                        }],
                    },
                },
            },
        };
        out.push_str("---\n");
        out.push_str(&yaml::to_string(&d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: asr\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: asr}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: parakeet-1.1b\n    spec:\n      nodeSelector:\n        kubernetes.io/hostname: node0\n      containers:\n      - name: asr\n        image: nvcr.io/nim/parakeet:latest\n        env: [{name: X, value: \"1\"}]\n        resources:\n          limits:\n            nvidia.com/mig-3g.40gb: \"1\"\n            cpu: 4\n";

    #[test]
    fn reads_deployments_and_pods() {
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: magpie-tts-multilingual\nspec:\n  containers:\n  - name: tts\n    resources:\n      limits:\n        nvidia.com/gpu.shared: 1\n";
        let text = format!("# header\n---\n{DEP}---\n{pod}");
        let w = Workloads::from_text(Path::new("w.yaml"), &text, &mut Vec::new()).unwrap();
        assert_eq!(w.items.len(), 2);
        let a = &w.items[0];
        assert_eq!(
            (a.model.as_str(), a.replicas, a.resource.as_str(), a.count),
            ("parakeet-1.1b", 2, "nvidia.com/mig-3g.40gb", 1)
        );
        assert_eq!(a.node_selector[HOSTNAME_LABEL], "node0");
        let b = &w.items[1];
        assert_eq!(
            (b.model.as_str(), b.replicas, b.resource.as_str()),
            ("magpie-tts-multilingual", 1, "nvidia.com/gpu.shared")
        );
        assert!(b.node_selector.is_empty());
    }

    #[test]
    fn errors_name_document_key_and_line() {
        let bad = DEP.replace("        env:", "        enviroment:");
        let e = Workloads::from_text(
            Path::new("w.yaml"),
            &format!("---\n{DEP}---\n{bad}"),
            &mut Vec::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("w.yaml: line 44, column 9"), "{e}");
        assert!(
            e.contains("document 2.spec.template.spec.containers[0].enviroment"),
            "{e}"
        );
        let two = DEP.replace("            cpu: 4", "            nvidia.com/gpu: 1");
        let e = Workloads::from_text(Path::new("w.yaml"), &two, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("one GPU resource"), "{e}");
        let none = DEP.replace("            nvidia.com/mig-3g.40gb: \"1\"\n", "");
        let e = Workloads::from_text(Path::new("w.yaml"), &none, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no Deployment (apps/v1) or Pod (v1) that asks for an nvidia.com/ resource"),
            "{e}"
        );
        let half = DEP.replace("\"1\"", "\"500m\"");
        let e = Workloads::from_text(Path::new("w.yaml"), &half, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 22") && e.contains("whole number"), "{e}");
    }

    #[test]
    fn written_deployments_read_back() {
        let items = vec![Workload {
            name: "parakeet-1.1b-node0".into(),
            model: "parakeet-1.1b".into(),
            model_candidates: Vec::new(),
            kind: "Deployment".into(),
            replicas: 3,
            node_selector: [(HOSTNAME_LABEL.to_string(), "node0".to_string())]
                .into_iter()
                .collect(),
            resource: "nvidia.com/mig-2g.20gb".into(),
            count: 1,
            at: At::default(),
        }];
        let text = write(&items, "default");
        let back = Workloads::from_text(Path::new("w.yaml"), &text, &mut Vec::new()).unwrap();
        let mut got = back.items.clone();
        got[0].at = At::default();
        assert_eq!(got[0].model_candidates[0].0, "parakeet-1.1b");
        got[0].model_candidates.clear();
        assert_eq!(got, items);
        assert!(text.contains(IMAGE_PLACEHOLDER));
    }
}
