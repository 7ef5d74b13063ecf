package deploy

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/config"
)

const replicatedDir = "deploy/kubernetes-replicated"

// The replicated overlay renders three replicas that may overlap (rolling
// updates, no volume: the ledger is PostgreSQL), a PodDisruptionBudget over
// the same pods, the database password projected where fleetd.yml reads it,
// and a config that loads with a cluster section.
func TestReplicatedOverlay(t *testing.T) {
	docs := kustomize(t, replicatedDir)
	var (
		kinds  []string
		dep    deployment
		pdb    map[string]any
		cfgYML string
	)
	for _, d := range docs {
		o := object{doc: d}
		kinds = append(kinds, o.kind())
		switch o.kind() {
		case "Deployment":
			into(t, d, &dep)
		case "PodDisruptionBudget":
			pdb = d
		case "ConfigMap":
			cfgYML, _ = get(d, "data", "fleetd.yml").(string)
		}
	}
	slices.Sort(kinds)
	if want := []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceMonitor"}; !slices.Equal(kinds, want) {
		t.Fatalf("kustomize renders %v, want %v (no PersistentVolumeClaim)", kinds, want)
	}

	spec := dep.Spec
	if spec.Replicas == nil || *spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", spec.Replicas)
	}
	if spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("strategy %q, want RollingUpdate: replicas are fenced by leases, not by never overlapping", spec.Strategy.Type)
	}
	c := spec.Template.Spec.Containers[0]
	var secretsAt string
	for _, v := range spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("volume %s claims %s: replicas keep no state on a volume", v.Name, v.PersistentVolumeClaim.ClaimName)
		}
		if v.Secret != nil {
			secretsAt = c.mount(v.Name)
			if !slices.ContainsFunc(v.Secret.Items, func(k keyToPath) bool { return k.Key == "db_password" }) {
				t.Errorf("the Secret volume does not project db_password")
			}
		}
	}
	sel, _ := get(pdb, "spec", "selector", "matchLabels").(map[string]any)
	for k, v := range sel {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("PodDisruptionBudget selects %s=%v, which the pods lack", k, v)
		}
	}
	if mu := get(pdb, "spec", "maxUnavailable"); mu != 1 {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", mu)
	}

	setEnv(t, c)
	cfg := parseWithFakeSecrets(t, cfgYML, secretsAt)
	if !cfg.Remediation.LedgerIsPostgres() || cfg.Cluster == nil {
		t.Fatalf("config: ledger %s, cluster %+v; want a PostgreSQL ledger and a cluster section", cfg.Remediation.RedactedLedger(), cfg.Cluster)
	}
	if want := "ledger_password_file: " + path.Join(secretsAt, "db_password"); !strings.Contains(cfgYML, want) {
		t.Errorf("fleetd.yml lacks %q: the password file is not where the Secret volume puts it", want)
	}
	if !strings.Contains(string(readFile(t, replicatedDir+"/secret.example.yaml")), "db_password:") {
		t.Error("secret.example.yaml lacks db_password")
	}
}

// The two-host systemd example: the drop-in adds the database password as a
// credential, and the shared fleetd.yml loads with the credentials of the
// unit plus the drop-in, with a PostgreSQL ledger and a cluster section.
func TestReplicatedSystemd(t *testing.T) {
	var creds []string
	for _, f := range []string{"deploy/systemd/fleetd.service", "deploy/systemd/replicated/replicated.conf"} {
		u, err := parseUnit(string(readFile(t, f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, lc := range u["Service"]["LoadCredential"] {
			id, _, _ := strings.Cut(lc, ":")
			creds = append(creds, id)
		}
	}
	dir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	for _, id := range creds {
		if err := os.WriteFile(filepath.Join(dir, id), []byte("fake\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgYAML := string(readFile(t, "deploy/systemd/replicated/fleetd.yml"))
	for _, m := range envRef.FindAllStringSubmatch(cfgYAML, -1) {
		if m[1] != "CREDENTIALS_DIRECTORY" {
			t.Setenv(m[1], "placeholder")
		}
	}
	cfg, err := config.Parse([]byte(cfgYAML), t.TempDir())
	if err != nil {
		t.Fatalf("deploy/systemd/replicated/fleetd.yml: %v", err)
	}
	if !cfg.Remediation.LedgerIsPostgres() || cfg.Cluster == nil || cfg.Cluster.ReplicaID != "" {
		t.Errorf("want a PostgreSQL ledger and a cluster section with replica_id left to the hostname; got %s, %+v",
			cfg.Remediation.RedactedLedger(), cfg.Cluster)
	}
	if !slices.Contains(creds, "db_password") {
		t.Error("no LoadCredential=db_password in the drop-in")
	}
}
