//! The schedulers' configuration stanzas, generated from the guest's managed resources so
//! that they never drift from what the guest decides on (`hamr config kube-scheduler|volcano`).

use std::fmt::Write;

/// A `KubeSchedulerConfiguration` (v1) with one profile and hamr as its extender: `filter`
/// chooses the node and cards, `bind` binds; every managed resource is `ignoredByScheduler`
/// (kube-scheduler cannot count shares of a card) and `nodeCacheCapable` keeps requests small.
pub fn kube_scheduler(url: &str, scheduler_name: &str, resources: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: true
  resourceName: {scheduler_name}
profiles:
  - schedulerName: {scheduler_name}
extenders:
  - urlPrefix: {url}
    filterVerb: filter
    bindVerb: bind
    weight: 1
    enableHTTPS: {https}
    tlsConfig:
      insecure: false
      caFile: /etc/hamr/tls/ca.crt
    httpTimeout: 30s
    nodeCacheCapable: true
    ignorable: false
    managedResources:
",
        https = url.starts_with("https://"),
    );
    for r in resources {
        let _ = writeln!(out, "      - name: {r}\n        ignoredByScheduler: true");
    }
    out
}

/// A `volcano-scheduler.conf` whose last tier calls hamr through Volcano's extender plugin
/// for the device resources.
pub fn volcano(url: &str, resources: &[String]) -> String {
    let mut out = String::from(
        "\
actions: \"enqueue, allocate, backfill\"
tiers:
  - plugins:
      - name: priority
      - name: gang
      - name: conformance
  - plugins:
      - name: drf
      - name: predicates
      - name: proportion
      - name: nodeorder
      - name: binpack
      - name: extender
        arguments:
",
    );
    let _ = writeln!(out, "          extender.urlPrefix: {url}/volcano");
    out.push_str(
        "          extender.httpTimeout: 1s
          extender.onSessionOpenVerb: onSessionOpen
          extender.onSessionCloseVerb: onSessionClose
          extender.predicateVerb: predicate
          extender.prioritizeVerb: prioritize
          extender.allocateFuncVerb: allocate
          extender.deallocateFuncVerb: deallocate
          extender.ignorable: false
          extender.managedResources:
",
    );
    for r in resources {
        let _ = writeln!(out, "            - {r}");
    }
    out
}

/// The CEL condition that selects pods asking for any of `resources` in a limit or request of
/// any container or init container.
pub fn device_pod_condition(resources: &[String]) -> String {
    let list = resources
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "(object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : []))\
         .exists(c, has(c.resources) && \
         ((has(c.resources.limits) && c.resources.limits.exists(r, r in [{list}])) || \
         (has(c.resources.requests) && c.resources.requests.exists(r, r in [{list}]))))"
    )
}

/// A `MutatingWebhookConfiguration` that sends only device pods to hamr (`matchConditions`),
/// and fails closed for them alone: other pods never wait on hamr.
pub fn webhook(service_namespace: &str, service: &str, resources: &[String]) -> String {
    let condition = device_pod_condition(resources).replace('\'', "''");
    format!(
        "\
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: hamr-scheduler
webhooks:
  - name: pods.hamr-scheduler.hamr.io
    admissionReviewVersions: [\"v1\"]
    sideEffects: None
    failurePolicy: Fail
    timeoutSeconds: 10
    reinvocationPolicy: Never
    clientConfig:
      service:
        namespace: {service_namespace}
        name: {service}
        path: /webhook
        port: 443
      caBundle: \"\"  # base64 of the CA that signed the serving certificate
    rules:
      - apiGroups: [\"\"]
        apiVersions: [\"v1\"]
        operations: [\"CREATE\"]
        resources: [\"pods\"]
        scope: Namespaced
    namespaceSelector:
      matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: [\"kube-system\"]
    matchConditions:
      - name: asks-for-a-device
        expression: '{condition}'
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_list_every_managed_resource() {
        let r = vec![
            "nvidia.com/gpu".to_string(),
            "nvidia.com/gpumem".to_string(),
        ];
        let k = kube_scheduler("https://hamr:443", "hamr-scheduler", &r);
        let v: serde_json::Value = serde_norway::from_str(&k).unwrap();
        let ext = &v["extenders"][0];
        assert_eq!(ext["nodeCacheCapable"], true);
        assert_eq!(ext["enableHTTPS"], true);
        assert_eq!(ext["managedResources"][1]["name"], "nvidia.com/gpumem");
        assert_eq!(ext["managedResources"][1]["ignoredByScheduler"], true);
        assert_eq!(v["profiles"][0]["schedulerName"], "hamr-scheduler");
        let vc = volcano("http://hamr:80", &r);
        let v: serde_json::Value = serde_norway::from_str(&vc).unwrap();
        let args = &v["tiers"][1]["plugins"][5]["arguments"];
        assert_eq!(args["extender.urlPrefix"], "http://hamr:80/volcano");
        assert_eq!(args["extender.managedResources"][0], "nvidia.com/gpu");
        let w = webhook("kube-system", "hamr-scheduler", &r);
        let v: serde_json::Value = serde_norway::from_str(&w).unwrap();
        let cond = v["webhooks"][0]["matchConditions"][0]["expression"]
            .as_str()
            .unwrap();
        assert!(
            cond.contains("r in ['nvidia.com/gpu', 'nvidia.com/gpumem']"),
            "{cond}"
        );
        assert_eq!(v["webhooks"][0]["failurePolicy"], "Fail");
    }
}
