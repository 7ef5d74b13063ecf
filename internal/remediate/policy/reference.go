package policy

import (
	"fmt"
	"strings"
)

// Reference renders the gate table as the Markdown reference page
// docs/remediation-gates.md; a golden test keeps the file equal to it.
func Reference() string {
	var b strings.Builder
	b.WriteString(`# Remediation gates

<!-- Generated from internal/remediate/policy (Gates) by
     go test ./internal/remediate/policy -run TestReferenceDoc -update
     Do not edit by hand. -->

Every recoverable fault passes through these gates, in this order, on every walk (and on every
Alertmanager request when ` + "`remediation.trigger`" + ` allows it). The first gate that refuses decides, and
is counted in ` + "`fleetd_remediation_skipped_total{reason}`" + `; every reason below is exported from
start-up, zeros included. A fault that passes every gate is sent ` + "`sync-device`" + `.

Gates marked *shared* depend on state every replica shares; the ledger checks them again, in the
same transaction that records the attempt, before the command is sent.

| # | reason | shared | refuses when |
|---|---|---|---|
`)
	for i, g := range Gates() {
		shared := ""
		if g.Shared {
			shared = "shared"
		}
		fmt.Fprintf(&b, "| %d | `%s` | %s | %s |\n", i+1, g.Reason, shared, g.Doc)
	}
	return b.String()
}
