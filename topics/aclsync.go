package topics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrNoAuthorizer is returned (wrapped) by DiffACLs when the cluster has no
// authorizer: Kafka answers SECURITY_DISABLED to DescribeACLs.
var ErrNoAuthorizer = errors.New("the cluster has no authorizer (set authorizer.class.name on the brokers); ACLs cannot be listed or created")

// wildcardPrincipal matches every user; an ACL for it grants every
// declared principal too, so it is never "another principal's".
const wildcardPrincipal = "User:*"

// ACLPlan is what DiffACLs found: Missing ACLs (declared, not on the
// cluster; ApplyACLs creates them) and Extra ones (on the cluster for a
// declared principal or for User:*, not declared; drift, left alone), both
// sorted. Unmanaged counts the ACLs of other principals, which are not
// drover's and are not reported.
type ACLPlan struct {
	Missing   []ACL
	Extra     []ACL
	Unmanaged int
}

// Empty reports whether the cluster's ACLs match the declaration.
func (p ACLPlan) Empty() bool { return len(p.Missing) == 0 && len(p.Extra) == 0 }

// String renders the plan, one line per ACL; "no ACL changes" when empty.
func (p ACLPlan) String() string {
	var b strings.Builder
	for _, a := range p.Missing {
		fmt.Fprintf(&b, "acl missing  %s\n", a)
	}
	for _, a := range p.Extra {
		fmt.Fprintf(&b, "acl extra    %s; not declared, left in place (%s)\n", a, removeHint(a))
	}
	if p.Unmanaged > 0 {
		fmt.Fprintf(&b, "acl unmanaged: %d ACL(s) of principals not in the ACL file; left alone\n", p.Unmanaged)
	}
	if p.Empty() {
		b.WriteString("no ACL changes: the cluster's ACLs match the ACL file\n")
	}
	return b.String()
}

// removeHint is the kafka-acls.sh command that removes a.
func removeHint(a ACL) string {
	res := map[kmsg.ACLResourceType]string{
		kmsg.ACLResourceTypeTopic: "--topic " + a.Name, kmsg.ACLResourceTypeGroup: "--group " + a.Name,
		kmsg.ACLResourceTypeCluster: "--cluster", kmsg.ACLResourceTypeTransactionalId: "--transactional-id " + a.Name,
	}[a.Resource]
	if res == "" {
		res = "--" + strings.ToLower(a.Resource.String()) + " " + a.Name
	}
	perm := "--allow-principal"
	if !a.Allow {
		perm = "--deny-principal"
	}
	op := strings.ReplaceAll(strings.ToLower(a.Operation.String()), "_", "")
	return fmt.Sprintf("remove: kafka-acls.sh --remove %s %s --operation %s --resource-pattern-type %s", perm, a.Principal, op, strings.ToLower(a.Pattern.String())) + " " + res
}

// DiffACLs lists every ACL on the cluster (DescribeACLs, which needs
// DESCRIBE on the cluster) and compares them with set.
func DiffACLs(ctx context.Context, adm *kadm.Client, set *ACLSet) (ACLPlan, error) {
	have, err := clusterACLs(ctx, adm)
	if err != nil {
		return ACLPlan{}, err
	}
	want := set.ACLs()
	var plan ACLPlan
	for _, a := range want {
		if !slices.Contains(have, a) {
			plan.Missing = append(plan.Missing, a)
		}
	}
	for _, a := range have {
		switch {
		case slices.Contains(want, a):
		case set.Managed(a.Principal) || a.Principal == wildcardPrincipal:
			plan.Extra = append(plan.Extra, a)
		default:
			plan.Unmanaged++
		}
	}
	return plan, nil
}

// clusterACLs returns every ACL on the cluster, sorted.
func clusterACLs(ctx context.Context, adm *kadm.Client) ([]ACL, error) {
	all := kadm.NewACLs().AnyResource().ResourcePatternType(kadm.ACLPatternAny).Operations().
		Allow().AllowHosts().Deny().DenyHosts()
	rs, err := adm.DescribeACLs(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("listing ACLs: %w", err)
	}
	var out []ACL
	for _, r := range rs {
		if errors.Is(r.Err, kerr.SecurityDisabled) {
			return nil, fmt.Errorf("listing ACLs: %w", ErrNoAuthorizer)
		}
		if r.Err != nil {
			return nil, fmt.Errorf("listing ACLs: %w", withMessage(r.Err, r.ErrMessage))
		}
		for _, d := range r.Described {
			out = append(out, ACL{Principal: d.Principal, Host: d.Host, Resource: d.Type, Name: d.Name, Pattern: d.Pattern,
				Operation: d.Operation, Allow: d.Permission == kmsg.ACLPermissionTypeAllow})
		}
	}
	slices.SortFunc(out, ACL.compare)
	return slices.CompactFunc(out, func(a, b ACL) bool { return a == b }), nil
}

// ACLReport is what ApplyACLs did: Created (on a dry run: would create),
// Failed (their errors are in ApplyACLs' error) and Extra (left alone).
type ACLReport struct {
	DryRun  bool
	Created []ACL
	Failed  []ACL
	Extra   []ACL
}

// String renders the report, one line per ACL.
func (r ACLReport) String() string {
	var b strings.Builder
	done := "created"
	if r.DryRun {
		done = "dry run, would create"
	}
	for _, a := range r.Created {
		fmt.Fprintf(&b, "acl %s: %s\n", done, a)
	}
	for _, a := range r.Failed {
		fmt.Fprintf(&b, "acl failed: %s\n", a)
	}
	for _, a := range r.Extra {
		fmt.Fprintf(&b, "acl not applied: extra %s (%s)\n", a, removeHint(a))
	}
	if len(r.Created)+len(r.Failed)+len(r.Extra) == 0 {
		b.WriteString("no ACL changes: the cluster's ACLs match the ACL file\n")
	}
	return b.String()
}

// ApplyACLs creates the plan's missing ACLs (kadm CreateACLs, which needs
// ALTER on the cluster: run it as the super user). It never deletes: extra
// ACLs are reported. Kafka has no validate-only CreateACLs, so a dry run
// sends nothing. It carries on past a failing ACL and returns every
// failure joined.
func ApplyACLs(ctx context.Context, adm *kadm.Client, plan ACLPlan, dryRun bool) (ACLReport, error) {
	rep := ACLReport{DryRun: dryRun, Extra: plan.Extra}
	if dryRun {
		rep.Created = plan.Missing
		return rep, nil
	}
	var errs []error
	for _, batch := range byResource(plan.Missing) {
		res, err := adm.CreateACLs(ctx, builder(batch))
		if err != nil {
			rep.Failed = append(rep.Failed, batch...)
			errs = append(errs, fmt.Errorf("creating ACLs of %s on %s %s: %w", batch[0].Principal, batch[0].Resource, batch[0].Name, err))
			continue
		}
		for _, r := range res {
			a := ACL{Principal: r.Principal, Host: r.Host, Resource: r.Type, Name: r.Name, Pattern: r.Pattern, Operation: r.Operation, Allow: true}
			if r.Err != nil {
				rep.Failed = append(rep.Failed, a)
				errs = append(errs, fmt.Errorf("creating ACL %s: %w", a, withMessage(r.Err, r.ErrMessage)))
				continue
			}
			rep.Created = append(rep.Created, a)
		}
	}
	return rep, errors.Join(errs...)
}

// byResource groups ACLs that differ only in their operation, so each group
// is one CreateACLs request.
func byResource(acls []ACL) [][]ACL {
	var out [][]ACL
	for _, a := range acls {
		i := slices.IndexFunc(out, func(g []ACL) bool {
			b := g[0]
			return a.Principal == b.Principal && a.Host == b.Host && a.Resource == b.Resource && a.Name == b.Name && a.Pattern == b.Pattern
		})
		if i < 0 {
			out = append(out, []ACL{a})
			continue
		}
		out[i] = append(out[i], a)
	}
	return out
}

// builder returns the kadm builder creating one group of byResource.
func builder(g []ACL) *kadm.ACLBuilder {
	a := g[0]
	ops := make([]kadm.ACLOperation, len(g))
	for i, x := range g {
		ops[i] = x.Operation
	}
	b := kadm.NewACLs().Allow(a.Principal).AllowHosts(a.Host).Operations(ops...).ResourcePatternType(a.Pattern)
	switch a.Resource {
	case kmsg.ACLResourceTypeTopic:
		b.Topics(a.Name)
	case kmsg.ACLResourceTypeGroup:
		b.Groups(a.Name)
	case kmsg.ACLResourceTypeTransactionalId:
		b.TransactionalIDs(a.Name)
	case kmsg.ACLResourceTypeCluster:
		b.Clusters()
	}
	return b
}
