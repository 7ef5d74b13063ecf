package remediate

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleetd/fleetd/internal/health"
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

// TestStormRatioInStatus: a storm reports the ratio the engine measured,
// so a page need not measure it again.
func TestStormRatioInStatus(t *testing.T) {
	v := newEnv(t, nil) // storm: 0.25 of at least 8 devices
	f := newFleet(map[string]int{"L1": 10, "L2": 40})
	for i := range 4 {
		f.fault("L1", i, health.Unhealthy, t0.Add(-time.Hour), 5)
	}
	v.e.Observe(context.Background(), f.snap(t0))
	st := v.e.Status()
	if len(st.Storms) != 1 || st.Storms[0].Scope != "L1" || st.Storms[0].Ratio != 0.4 {
		t.Fatalf("storms %+v, want L1 at 0.4", st.Storms)
	}
	f.clearFaults("L1")
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0.Add(time.Minute)))
	if st := v.e.Status(); len(st.Storms) != 1 || st.Storms[0].Ratio != 0.1 || st.Storms[0].BelowSince == nil {
		t.Fatalf("storms %+v, want L1 holding below at 0.1", st.Storms)
	}
}
