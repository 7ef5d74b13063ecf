package remediate

import (
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleetd/fleetd/internal/remediate/policy"
)

// TestReasonsOneSource: SkipReasons, the pre-created series of
// fleetd_remediation_skipped_total and the generated reference page all
// list the gate table's reasons, in its order.
func TestReasonsOneSource(t *testing.T) {
	want := make([]string, 0)
	for _, g := range policy.Gates() {
		want = append(want, g.Reason)
	}
	if got := SkipReasons(); !slices.Equal(got, want) {
		t.Fatalf("SkipReasons() = %v\nwant the gate table %v", got, want)
	}
	v := newEnv(t, nil)
	mfs, err := v.reg.Gather()
	mustNil(t, err)
	var labels []string
	for _, mf := range mfs {
		if mf.GetName() != "fleetd_remediation_skipped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() != 0 {
				t.Errorf("a fresh engine counts %v skips", m)
			}
			labels = append(labels, labelValue(m, "reason"))
		}
	}
	sorted := slices.Sorted(slices.Values(want))
	if !slices.Equal(labels, sorted) { // the registry sorts series by label
		t.Fatalf("skipped_total series %v, want one per gate %v", labels, sorted)
	}
	ref := policy.Reference()
	last := -1
	for _, r := range want {
		i := strings.Index(ref, "| `"+r+"` |")
		if i < 0 || i < last {
			t.Fatalf("reference page lacks %q or lists it out of gate order", r)
		}
		last = i
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
