package domain

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Access (DESIGN §5): the principals' tokens (A1), the billing views a payer
// shares (A2), and the pure facts the API's authorization asks of the ledger:
// on whose behalf a command acts (CommandParty) and which organizations a payer
// paid for in which months (PaidFor, A3).
//
// Tokens are aggregates like any other: TokenCreated carries only the token's
// SHA-256, so the event log never holds a usable credential, and every process
// that follows billing.token.> accepts the same tokens.

// Roles a token can carry (A1). services/auth uses the same names.
const (
	RoleAdmin   = "admin"
	RolePayer   = "payer"
	RoleSource  = "source"
	RoleAuditor = "auditor"
	RoleIngest  = "ingest"
)

// TokenRoles lists every role, in the order shown to people.
var TokenRoles = []string{RoleAdmin, RolePayer, RoleSource, RoleAuditor, RoleIngest}

// Limits of the access commands.
const (
	// maxViewSources bounds the source views of a CUSTOM view.
	maxViewSources = 20
	// maxViewDepth bounds how deep CUSTOM views may stack on each other.
	maxViewDepth = 5
	// maxViewFilterAccounts bounds a view filter's accounts.
	maxViewFilterAccounts = 1000
	// maxViewTags bounds a view filter's tags (and values per tag).
	maxViewTags = 50
	// maxRevokeReason bounds RevokeToken.reason (characters).
	maxRevokeReason = 256
)

// TokenStream is the stream of one token.
func TokenStream(tokenID string) string { return "billing.token." + tokenID }

// TokenFilter selects every token stream; each billingd process follows it.
const TokenFilter = "billing.token.>"

// BillingViewStream is the stream of one billing view.
func BillingViewStream(viewID string) string { return "billing.view." + viewID }

// BillingViewFamily selects every billing view stream. Views depend on each
// other (a CUSTOM view's source views), so the command pipeline guards every
// append to a view stream by the whole family (DecisionFamily): a view built
// on a source view and that source view's deletion can never both commit.
const BillingViewFamily = "billing.view.>"

// accessEvent wraps an access payload in an envelope.
func accessEvent(p any) (*billingv1.Event, bool) {
	e := &billingv1.Event{}
	switch x := p.(type) {
	case *billingv1.TokenCreated:
		e.Payload = &billingv1.Event_TokenCreated{TokenCreated: x}
	case *billingv1.TokenRevoked:
		e.Payload = &billingv1.Event_TokenRevoked{TokenRevoked: x}
	case *billingv1.BillingViewCreated:
		e.Payload = &billingv1.Event_BillingViewCreated{BillingViewCreated: x}
	case *billingv1.BillingViewGranted:
		e.Payload = &billingv1.Event_BillingViewGranted{BillingViewGranted: x}
	case *billingv1.BillingViewRevoked:
		e.Payload = &billingv1.Event_BillingViewRevoked{BillingViewRevoked: x}
	case *billingv1.BillingViewDeleted:
		e.Payload = &billingv1.Event_BillingViewDeleted{BillingViewDeleted: x}
	default:
		return nil, false
	}
	return e, true
}

// decideAccess is Decide for the access commands.
func decideAccess(v View, cmd proto.Message) (Outcome, error) {
	switch c := cmd.(type) {
	case *billingv1.CreateToken:
		return decideCreateToken(v, c)
	case *billingv1.RevokeToken:
		return decideRevokeToken(v, c)
	case *billingv1.CreateBillingView:
		return decideCreateBillingView(v, c)
	case *billingv1.GrantBillingView:
		return decideGrantBillingView(v, c)
	case *billingv1.RevokeBillingView:
		return decideRevokeBillingView(v, c)
	case *billingv1.DeleteBillingView:
		return decideDeleteBillingView(v, c)
	default:
		return Outcome{}, Reject(CodeInvalidArgument, "unknown command %T", cmd)
	}
}

// ---------------------------------------------------------------------------
// Tokens (A1).

// Token is the state of a token aggregate: who holds it, never the token.
type Token struct {
	id      string
	name    string
	role    string
	account string
	sha256  string
	revoked bool
	reason  string
}

// Exists reports whether the token was created.
func (t Token) Exists() bool { return t.id != "" }

// ID is the token id.
func (t Token) ID() string { return t.id }

// Name is the holder's name.
func (t Token) Name() string { return t.name }

// Role is the token's role.
func (t Token) Role() string { return t.role }

// AccountID is the account a payer or source token acts for.
func (t Token) AccountID() string { return t.account }

// SHA256 is the hex SHA-256 of the token.
func (t Token) SHA256() string { return t.sha256 }

// Revoked reports whether the token was revoked.
func (t Token) Revoked() bool { return t.revoked }

// RevokedReason is the reason given when it was revoked.
func (t Token) RevokedReason() string { return t.reason }

// EvolveToken folds one event into a token.
func EvolveToken(t Token, ev *billingv1.Event) Token {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_TokenCreated:
		e := p.TokenCreated
		t = Token{id: e.GetTokenId(), name: e.GetName(), role: e.GetRole(), account: e.GetAccountId(), sha256: e.GetTokenSha256()}
	case *billingv1.Event_TokenRevoked:
		t.revoked, t.reason = true, p.TokenRevoked.GetReason()
	}
	return t
}

// FoldToken folds a token stream.
func FoldToken(events []*billingv1.Event) Token {
	var t Token
	for _, ev := range events {
		t = EvolveToken(t, ev)
	}
	return t
}

// ValidRole reports whether role is one of TokenRoles.
func ValidRole(role string) bool { return slices.Contains(TokenRoles, role) }

// RoleNeedsAccount reports whether tokens of role act for one account.
func RoleNeedsAccount(role string) bool { return role == RolePayer || role == RoleSource }

func decideCreateToken(v View, c *billingv1.CreateToken) (Outcome, error) {
	id := c.GetTokenId()
	if err := checkID("token_id", id); err != nil {
		return Outcome{}, err
	}
	if n := utf8.RuneCountInString(c.GetName()); n == 0 || n > MaxNameLength {
		return Outcome{}, Reject(CodeInvalidArgument, "name must be 1 to %d characters (got %d)", MaxNameLength, n)
	}
	role := c.GetRole()
	if !ValidRole(role) {
		return Outcome{}, Reject(CodeInvalidArgument, "role %q is not one of %s (A1)", role, strings.Join(TokenRoles, ", "))
	}
	sum := c.GetTokenSha256()
	if raw, err := hex.DecodeString(sum); err != nil || len(raw) != 32 || strings.ToLower(sum) != sum {
		return Outcome{}, Reject(CodeInvalidArgument, "token_sha256 must be the lower-case hex SHA-256 of the token (64 characters)")
	}
	account := c.GetAccountId()
	if RoleNeedsAccount(role) {
		if err := checkAccountID("account_id", account); err != nil {
			return Outcome{}, Reject(CodeInvalidArgument, "a %s token acts for one organization: %s", role, err.(*Error).Message)
		}
		// A payer or source is an organization, named by its management account.
		if _, err := loadManagementOrg(v, role, account); err != nil {
			return Outcome{}, err
		}
	} else if account != "" {
		return Outcome{}, Reject(CodeInvalidArgument, "a %s token acts for no account; account_id %q must be empty", role, account)
	}
	evs, err := v.Events(TokenStream(id))
	if err != nil {
		return Outcome{}, err
	}
	if FoldToken(evs).Exists() {
		return Outcome{}, Reject(CodeAlreadyExists, "token id %s is already used", id)
	}
	created, _ := accessEvent(&billingv1.TokenCreated{TokenId: id, Name: c.GetName(), Role: role, AccountId: account, TokenSha256: sum})
	return Outcome{AggregateID: id, Changes: []Change{{Stream: TokenStream(id), Events: []*billingv1.Event{created}}}}, nil
}

func decideRevokeToken(v View, c *billingv1.RevokeToken) (Outcome, error) {
	id := c.GetTokenId()
	if err := checkID("token_id", id); err != nil {
		return Outcome{}, err
	}
	if n := utf8.RuneCountInString(c.GetReason()); n > maxRevokeReason {
		return Outcome{}, Reject(CodeInvalidArgument, "reason must be at most %d characters (got %d)", maxRevokeReason, n)
	}
	evs, err := v.Events(TokenStream(id))
	if err != nil {
		return Outcome{}, err
	}
	t := FoldToken(evs)
	if !t.Exists() {
		return Outcome{}, Reject(CodeNotFound, "token %s does not exist", id)
	}
	if t.Revoked() {
		return Outcome{}, Reject(CodeFailedPrecondition, "token %s is already revoked", id)
	}
	revoked, _ := accessEvent(&billingv1.TokenRevoked{TokenId: id, Reason: c.GetReason()})
	return Outcome{AggregateID: id, Changes: []Change{{Stream: TokenStream(id), Events: []*billingv1.Event{revoked}}}}, nil
}

// ---------------------------------------------------------------------------
// Billing views (A2).

// View types, by their stable names.
const (
	ViewBillingGroup = "BILLING_GROUP"
	ViewCustom       = "CUSTOM"
)

// BillingView is the state of a billing view aggregate.
type BillingView struct {
	id       string
	owner    string
	typ      billingv1.BillingViewType
	name     string
	group    string
	sources  []string
	accounts []string // sorted
	tags     []*billingv1.TagFilter
	grants   []string // sorted
	deleted  bool
	// lastGrants are the grantees whose grants ended with the deletion, sorted.
	lastGrants []string
}

// Exists reports whether the view was created (deleted or not: its id stays
// taken for ever).
func (b BillingView) Exists() bool { return b.id != "" }

// Deleted reports whether the view was deleted (DeleteBillingView).
func (b BillingView) Deleted() bool { return b.deleted }

// Live reports whether the view exists and was not deleted.
func (b BillingView) Live() bool { return b.Exists() && !b.deleted }

// ID is the view id.
func (b BillingView) ID() string { return b.id }

// Owner is the payer whose pro forma rows the view selects.
func (b BillingView) Owner() string { return b.owner }

// Type is BILLING_GROUP or CUSTOM.
func (b BillingView) Type() string {
	if b.typ == billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP {
		return ViewBillingGroup
	}
	return ViewCustom
}

// Name is the display name.
func (b BillingView) Name() string { return b.name }

// BillingGroupID is the group of a BILLING_GROUP view.
func (b BillingView) BillingGroupID() string { return b.group }

// SourceViewIDs are the source views of a CUSTOM view.
func (b BillingView) SourceViewIDs() []string { return slices.Clone(b.sources) }

// FilterAccounts are the accounts the view's own filter keeps (nil = all).
func (b BillingView) FilterAccounts() []string { return slices.Clone(b.accounts) }

// Filter is the view's own filter as recorded (accounts sorted, tags sorted
// by key), a copy; nil when it has none.
func (b BillingView) Filter() *billingv1.BillingViewFilter {
	if len(b.accounts) == 0 && len(b.tags) == 0 {
		return nil
	}
	f := &billingv1.BillingViewFilter{AccountIds: slices.Clone(b.accounts)}
	for _, t := range b.tags {
		f.Tags = append(f.Tags, proto.Clone(t).(*billingv1.TagFilter))
	}
	return f
}

// HasTagFilter reports whether the view's own filter names tags.
func (b BillingView) HasTagFilter() bool { return len(b.tags) > 0 }

// Grantees are the organizations the view is granted to now, sorted (none
// once it is deleted).
func (b BillingView) Grantees() []string { return slices.Clone(b.grants) }

// GrantedTo reports whether the view is granted to the organization now:
// granted and neither revoked since nor deleted.
func (b BillingView) GrantedTo(account string) bool {
	_, ok := slices.BinarySearch(b.grants, account)
	return ok
}

// GrantedWhenDeleted reports whether the organization held a grant of the
// view when it was deleted: such a former grantee is told that the view is
// gone (NOT_FOUND) rather than denied like a stranger.
func (b BillingView) GrantedWhenDeleted(account string) bool {
	_, ok := slices.BinarySearch(b.lastGrants, account)
	return b.deleted && ok
}

// EvolveBillingView folds one event into a view.
func EvolveBillingView(b BillingView, ev *billingv1.Event) BillingView {
	switch p := ev.GetPayload().(type) {
	case *billingv1.Event_BillingViewCreated:
		e := p.BillingViewCreated
		b = BillingView{id: e.GetBillingViewId(), owner: e.GetOwnerAccountId(), typ: e.GetType(), name: e.GetName(),
			group: e.GetBillingGroupId(), sources: slices.Clone(e.GetSourceViewIds()),
			accounts: slices.Sorted(slices.Values(e.GetFilter().GetAccountIds())), tags: e.GetFilter().GetTags()}
	case *billingv1.Event_BillingViewGranted:
		b.grants = withString(b.grants, p.BillingViewGranted.GetAccountId())
	case *billingv1.Event_BillingViewRevoked:
		b.grants = withoutString(b.grants, p.BillingViewRevoked.GetAccountId())
	case *billingv1.Event_BillingViewDeleted:
		b.deleted, b.lastGrants, b.grants = true, b.grants, nil
	}
	return b
}

// FoldBillingView folds a view stream.
func FoldBillingView(events []*billingv1.Event) BillingView {
	var b BillingView
	for _, ev := range events {
		b = EvolveBillingView(b, ev)
	}
	return b
}

// LoadBillingView reads a live view through v; NOT_FOUND when it does not
// exist or was deleted.
func LoadBillingView(v View, id string) (BillingView, error) {
	b, err := FindBillingView(v, id)
	if err != nil {
		return BillingView{}, err
	}
	if b.Deleted() {
		return BillingView{}, Reject(CodeNotFound, "billing view %s was deleted", id)
	}
	return b, nil
}

// FindBillingView reads a view through v, deleted or not; NOT_FOUND when it
// was never created. Its owner never changes, deletion included.
func FindBillingView(v View, id string) (BillingView, error) {
	if err := checkID("billing_view_id", id); err != nil {
		return BillingView{}, err
	}
	evs, err := v.Events(BillingViewStream(id))
	if err != nil {
		return BillingView{}, err
	}
	b := FoldBillingView(evs)
	if !b.Exists() {
		return BillingView{}, Reject(CodeNotFound, "billing view %s does not exist", id)
	}
	return b, nil
}

// FamilyReader is implemented by views that can read a whole family of
// streams (the command pipeline's view and commands.Directory do).
type FamilyReader interface {
	// EachFamilyEvent calls fn for every event of the streams matching family
	// (a subject filter, e.g. BillingViewFamily), in store order. In a
	// decision, the appends to the family's streams are guarded against any
	// event of the family newer than those read.
	EachFamilyEvent(family string, fn func(*billingv1.Event) error) error
}

// AllBillingViews folds every billing view ever created, deleted ones
// included, ordered by id. It reads every view stream, so v must be a
// FamilyReader.
func AllBillingViews(v View) ([]BillingView, error) {
	r, ok := v.(FamilyReader)
	if !ok {
		return nil, fmt.Errorf("billing views: the view cannot read the family %s", BillingViewFamily)
	}
	byStream := map[string]BillingView{}
	err := r.EachFamilyEvent(BillingViewFamily, func(ev *billingv1.Event) error {
		byStream[ev.GetStream()] = EvolveBillingView(byStream[ev.GetStream()], ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]BillingView, 0, len(byStream))
	for _, b := range byStream {
		if b.Exists() {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b BillingView) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

func parseViewType(s string) (billingv1.BillingViewType, error) {
	switch s {
	case ViewBillingGroup:
		return billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP, nil
	case ViewCustom:
		return billingv1.BillingViewType_BILLING_VIEW_TYPE_CUSTOM, nil
	case "":
		return 0, Reject(CodeInvalidArgument, "type is required (%s or %s)", ViewBillingGroup, ViewCustom)
	default:
		return 0, Reject(CodeInvalidArgument, "type %q is not %s or %s", s, ViewBillingGroup, ViewCustom)
	}
}

// checkViewFilter validates a filter and returns it canonical: accounts
// sorted, tags sorted by key with sorted values.
func checkViewFilter(f *billingv1.BillingViewFilter) (*billingv1.BillingViewFilter, error) {
	if f == nil {
		return nil, nil
	}
	if len(f.GetAccountIds()) > maxViewFilterAccounts {
		return nil, Reject(CodeInvalidArgument, "filter.account_ids holds %d accounts; at most %d", len(f.GetAccountIds()), maxViewFilterAccounts)
	}
	accounts := slices.Clone(f.GetAccountIds())
	for _, a := range accounts {
		if err := checkAccountID("filter.account_ids", a); err != nil {
			return nil, err
		}
	}
	slices.Sort(accounts)
	if i := firstDuplicate(accounts); i >= 0 {
		return nil, Reject(CodeInvalidArgument, "filter.account_ids lists %s twice", accounts[i])
	}
	if len(f.GetTags()) > maxViewTags {
		return nil, Reject(CodeInvalidArgument, "filter.tags holds %d tags; at most %d", len(f.GetTags()), maxViewTags)
	}
	tags := make([]*billingv1.TagFilter, 0, len(f.GetTags()))
	for _, t := range f.GetTags() {
		if n := utf8.RuneCountInString(t.GetKey()); n == 0 || n > maxKeyLength {
			return nil, Reject(CodeInvalidArgument, "filter.tags: a key must be 1 to %d characters (got %d)", maxKeyLength, n)
		}
		if len(t.GetValues()) == 0 || len(t.GetValues()) > maxViewTags {
			return nil, Reject(CodeInvalidArgument, "filter.tags: tag %q needs 1 to %d values", t.GetKey(), maxViewTags)
		}
		values := slices.Clone(t.GetValues())
		for _, val := range values {
			if utf8.RuneCountInString(val) > maxKeyLength {
				return nil, Reject(CodeInvalidArgument, "filter.tags: a value of tag %q is longer than %d characters", t.GetKey(), maxKeyLength)
			}
		}
		slices.Sort(values)
		values = slices.Compact(values)
		tags = append(tags, &billingv1.TagFilter{Key: t.GetKey(), Values: values})
	}
	slices.SortFunc(tags, func(a, b *billingv1.TagFilter) int { return strings.Compare(a.GetKey(), b.GetKey()) })
	for i := 1; i < len(tags); i++ {
		if tags[i].GetKey() == tags[i-1].GetKey() {
			return nil, Reject(CodeInvalidArgument, "filter.tags names tag %q twice", tags[i].GetKey())
		}
	}
	if len(accounts) == 0 && len(tags) == 0 {
		return nil, nil
	}
	return &billingv1.BillingViewFilter{AccountIds: accounts, Tags: tags}, nil
}

// firstDuplicate returns the index of the first element of a sorted slice
// equal to its predecessor, or -1.
func firstDuplicate(sorted []string) int {
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return i
		}
	}
	return -1
}

func decideCreateBillingView(v View, c *billingv1.CreateBillingView) (Outcome, error) {
	id, owner := c.GetBillingViewId(), c.GetOwnerAccountId()
	if err := checkID("billing_view_id", id); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("owner_account_id", owner); err != nil {
		return Outcome{}, err
	}
	typ, err := parseViewType(c.GetType())
	if err != nil {
		return Outcome{}, err
	}
	if n := utf8.RuneCountInString(c.GetName()); n > MaxNameLength {
		return Outcome{}, Reject(CodeInvalidArgument, "name must be at most %d characters (got %d)", MaxNameLength, n)
	}
	filter, err := checkViewFilter(c.GetFilter())
	if err != nil {
		return Outcome{}, err
	}
	if _, err := loadManagementOrg(v, "owner", owner); err != nil {
		return Outcome{}, err
	}
	evs, err := v.Events(BillingViewStream(id))
	if err != nil {
		return Outcome{}, err
	}
	if prior := FoldBillingView(evs); prior.Deleted() {
		return Outcome{}, Reject(CodeAlreadyExists, "billing view %s existed and was deleted; view ids are never reused", id)
	} else if prior.Exists() {
		return Outcome{}, Reject(CodeAlreadyExists, "billing view %s already exists; view ids are never reused", id)
	}
	created := &billingv1.BillingViewCreated{BillingViewId: id, OwnerAccountId: owner, Type: typ, Name: c.GetName(), Filter: filter}
	switch typ {
	case billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP:
		if len(c.GetSourceViewIds()) > 0 {
			return Outcome{}, Reject(CodeInvalidArgument, "a %s view selects one billing group: source_view_ids must be empty", ViewBillingGroup)
		}
		gid := c.GetBillingGroupId()
		if gid == "" {
			return Outcome{}, Reject(CodeInvalidArgument, "billing_group_id is required for a %s view", ViewBillingGroup)
		}
		gOwner, err := locate(v, KindGroup, "billing_group_id", gid)
		if err != nil {
			return Outcome{}, err
		}
		if gOwner != owner {
			return Outcome{}, Reject(CodePermissionDenied, "billing group %s belongs to %s, not to the view's owner %s (A2)", gid, gOwner, owner)
		}
		created.BillingGroupId = gid
	default:
		if c.GetBillingGroupId() != "" {
			return Outcome{}, Reject(CodeInvalidArgument, "a %s view selects source views, not a billing group: billing_group_id must be empty", ViewCustom)
		}
		if len(c.GetSourceViewIds()) > maxViewSources {
			return Outcome{}, Reject(CodeInvalidArgument, "a view has at most %d source views (got %d)", maxViewSources, len(c.GetSourceViewIds()))
		}
		seen := map[string]bool{}
		for _, sid := range c.GetSourceViewIds() {
			if seen[sid] {
				return Outcome{}, Reject(CodeInvalidArgument, "source_view_ids lists %s twice", sid)
			}
			seen[sid] = true
			src, err := LoadBillingView(v, sid)
			if err != nil {
				return Outcome{}, err
			}
			if src.Owner() != owner {
				return Outcome{}, Reject(CodePermissionDenied, "source view %s belongs to %s, not to the view's owner %s (A2)", sid, src.Owner(), owner)
			}
			if d, err := viewDepth(v, src, 1); err != nil {
				return Outcome{}, err
			} else if d >= maxViewDepth {
				return Outcome{}, Reject(CodeInvalidArgument, "views stack at most %d deep; source view %s is already %d deep", maxViewDepth, sid, d)
			}
		}
		created.SourceViewIds = slices.Clone(c.GetSourceViewIds())
	}
	e, _ := accessEvent(created)
	// The group is never re-owned and outlives the view's definition (pro
	// forma rows keep its id). The source views were read live: the pipeline
	// guards this append by BillingViewFamily, so a source view deleted
	// meanwhile makes it decide again (and fail NOT_FOUND).
	return Outcome{AggregateID: id, Changes: []Change{{Stream: BillingViewStream(id), Events: []*billingv1.Event{e}}}}, nil
}

// viewDepth is how many views stack under b (1 = b alone).
func viewDepth(v View, b BillingView, depth int) (int, error) {
	if depth > maxViewDepth {
		return depth, nil
	}
	most := depth
	for _, sid := range b.sources {
		src, err := LoadBillingView(v, sid)
		if err != nil {
			return 0, err
		}
		d, err := viewDepth(v, src, depth+1)
		if err != nil {
			return 0, err
		}
		most = max(most, d)
	}
	return most, nil
}

func decideGrantBillingView(v View, c *billingv1.GrantBillingView) (Outcome, error) {
	grantee := c.GetAccountId()
	if err := checkAccountID("account_id", grantee); err != nil {
		return Outcome{}, err
	}
	b, err := LoadBillingView(v, c.GetBillingViewId())
	if err != nil {
		return Outcome{}, err
	}
	org, err := loadManagementOrg(v, "grantee", grantee)
	if err != nil {
		return Outcome{}, err
	}
	if grantee == b.Owner() {
		return Outcome{}, Reject(CodeInvalidArgument, "%s owns billing view %s and reads it without a grant", grantee, b.ID())
	}
	if b.GrantedTo(grantee) {
		return Outcome{}, Reject(CodeAlreadyExists, "billing view %s is already granted to %s", b.ID(), grantee)
	}
	// A2: a grantee never sees another organization. The view must be confined
	// to accounts of the grantee: accounts never change organization, so the
	// confinement holds for ever.
	scope, bounded, err := viewAccountScope(v, b, 0)
	if err != nil {
		return Outcome{}, err
	}
	if !bounded {
		return Outcome{}, Reject(CodeFailedPrecondition, "billing view %s is not confined to named accounts (a billing group can gain accounts of other organizations); grant a %s view whose filter.account_ids lists accounts of %s (A2)", b.ID(), ViewCustom, grantee)
	}
	mine := map[string]bool{}
	for _, a := range org.Accounts() {
		mine[a] = true
	}
	for _, a := range scope {
		if !mine[a] {
			return Outcome{}, Reject(CodeFailedPrecondition, "billing view %s selects account %s, which is not an account of organization %s; a view is only granted to the organization it is confined to (A2)", b.ID(), a, grantee)
		}
	}
	e, _ := accessEvent(&billingv1.BillingViewGranted{BillingViewId: b.ID(), OwnerAccountId: b.Owner(), AccountId: grantee})
	return Outcome{AggregateID: b.ID(), Changes: []Change{{Stream: BillingViewStream(b.ID()), Events: []*billingv1.Event{e}}}}, nil
}

func decideRevokeBillingView(v View, c *billingv1.RevokeBillingView) (Outcome, error) {
	grantee := c.GetAccountId()
	if err := checkAccountID("account_id", grantee); err != nil {
		return Outcome{}, err
	}
	b, err := LoadBillingView(v, c.GetBillingViewId())
	if err != nil {
		return Outcome{}, err
	}
	if !b.GrantedTo(grantee) {
		granted := "it is granted to no organization"
		if g := b.Grantees(); len(g) > 0 {
			granted = "it is granted to " + strings.Join(g, ", ")
		}
		return Outcome{}, Reject(CodeFailedPrecondition, "billing view %s is not granted to %s (%s)", b.ID(), grantee, granted)
	}
	e, _ := accessEvent(&billingv1.BillingViewRevoked{BillingViewId: b.ID(), OwnerAccountId: b.Owner(), AccountId: grantee})
	return Outcome{AggregateID: b.ID(), Changes: []Change{{Stream: BillingViewStream(b.ID()), Events: []*billingv1.Event{e}}}}, nil
}

func decideDeleteBillingView(v View, c *billingv1.DeleteBillingView) (Outcome, error) {
	b, err := LoadBillingView(v, c.GetBillingViewId())
	if err != nil {
		return Outcome{}, err
	}
	// A live CUSTOM view built on this one would lose its rows: the owner
	// deletes (or never built) those first. Every view stream is read; the
	// pipeline guards the append by BillingViewFamily, so a view created on
	// this one meanwhile makes it decide again.
	all, err := AllBillingViews(v)
	if err != nil {
		return Outcome{}, err
	}
	var users []string
	for _, o := range all {
		if o.Live() && o.Owner() == b.Owner() && slices.Contains(o.sources, b.ID()) {
			users = append(users, o.ID())
		}
	}
	if len(users) > 0 {
		return Outcome{}, Reject(CodeFailedPrecondition, "billing view %s is a source view of live CUSTOM view(s) %s of %s; delete them first",
			b.ID(), strings.Join(users, ", "), b.Owner())
	}
	e, _ := accessEvent(&billingv1.BillingViewDeleted{BillingViewId: b.ID(), OwnerAccountId: b.Owner(), RevokedAccountIds: b.Grantees()})
	return Outcome{AggregateID: b.ID(), Changes: []Change{{Stream: BillingViewStream(b.ID()), Events: []*billingv1.Event{e}}}}, nil
}

// viewAccountScope returns the accounts a view can ever select, sorted, and
// whether that set is bounded: a view's own account filter bounds it; else a
// CUSTOM view is bounded by the union of its sources when there are some and
// each is bounded; a BILLING_GROUP view without an account filter is not.
func viewAccountScope(v View, b BillingView, depth int) ([]string, bool, error) {
	if len(b.accounts) > 0 {
		return slices.Clone(b.accounts), true, nil
	}
	if b.typ == billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP || len(b.sources) == 0 || depth > maxViewDepth {
		return nil, false, nil
	}
	set := map[string]bool{}
	for _, sid := range b.sources {
		src, err := LoadBillingView(v, sid)
		if err != nil {
			return nil, false, err
		}
		accts, bounded, err := viewAccountScope(v, src, depth+1)
		if err != nil || !bounded {
			return nil, false, err
		}
		for _, a := range accts {
			set[a] = true
		}
	}
	return slices.Sorted(maps.Keys(set)), true, nil
}

// Selection is what a billing view selects from its owner's pro forma view
// (R1): Match tells whether a row of a billing group and account belongs.
type Selection struct {
	// Owner is the payer whose rows (owner_account_id) the view selects.
	Owner string
	// TagFiltered is true when a view of the tree filters on tags: pro forma
	// rows carry no tags, so such a selection cannot be evaluated exactly.
	TagFiltered bool
	match       func(group, account string) bool
}

// Match reports whether a pro forma row of billing group and account is selected.
func (s Selection) Match(group, account string) bool {
	return s.match != nil && s.match(group, account)
}

// ResolveBillingView resolves a view into its Selection.
func ResolveBillingView(v View, id string) (BillingView, Selection, error) {
	b, err := LoadBillingView(v, id)
	if err != nil {
		return BillingView{}, Selection{}, err
	}
	sel := Selection{Owner: b.Owner()}
	sel.match, sel.TagFiltered, err = resolveView(v, b, 0)
	if err != nil {
		return BillingView{}, Selection{}, err
	}
	return b, sel, nil
}

func resolveView(v View, b BillingView, depth int) (func(group, account string) bool, bool, error) {
	if depth > maxViewDepth {
		return nil, false, Reject(CodeFailedPrecondition, "billing view %s stacks more than %d views deep", b.ID(), maxViewDepth)
	}
	tagged := len(b.tags) > 0
	var base func(group, account string) bool
	switch {
	case b.typ == billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP:
		gid := b.group
		base = func(group, _ string) bool { return group == gid }
	case len(b.sources) == 0:
		base = func(string, string) bool { return true }
	default:
		parts := make([]func(string, string) bool, 0, len(b.sources))
		for _, sid := range b.sources {
			src, err := LoadBillingView(v, sid)
			if err != nil {
				return nil, false, err
			}
			m, t, err := resolveView(v, src, depth+1)
			if err != nil {
				return nil, false, err
			}
			parts = append(parts, m)
			tagged = tagged || t
		}
		base = func(group, account string) bool {
			for _, m := range parts {
				if m(group, account) {
					return true
				}
			}
			return false
		}
	}
	if len(b.accounts) == 0 {
		return base, tagged, nil
	}
	accounts := slices.Clone(b.accounts)
	return func(group, account string) bool {
		_, ok := slices.BinarySearch(accounts, account)
		return ok && base(group, account)
	}, tagged, nil
}

// ---------------------------------------------------------------------------
// Who a command acts for (A2).

// PartyRole is the kind of principal, besides an admin, that may send a command.
type PartyRole string

// Party roles.
const (
	// PartyAdminOnly: only an admin sends the command (ledger-wide configuration,
	// onboarding, tokens).
	PartyAdminOnly PartyRole = ""
	// PartyPayer: the payer (or owner) named by Party.Account.
	PartyPayer PartyRole = RolePayer
	// PartySource: the source organization named by Party.Account.
	PartySource PartyRole = RoleSource
)

// Party says on whose behalf a command acts: a payer token may send it when
// Role is PartyPayer and Account is its account, a source token when Role is
// PartySource and Account is its account. Subject names what the command
// addresses, for the messages of a denial.
type Party struct {
	Role    PartyRole
	Account string
	Subject string
}

// CommandParty returns the party a command acts for, reading the aggregates
// it addresses by id alone (the owner of a pricing rule, the payer and source
// of a transfer). Owners and the sides of a transfer never change, so the
// answer cannot go stale between this check and the decision. A command
// unknown here is admin-only: a new command is closed until its rule is added.
//
// The rule: a payer acts on what it owns (its invitations, pricing, invoice
// units, payment profiles, month closes, payments, billing views) and on its
// own organization's tax settings; a source accepts or declines the
// invitations it received and withdraws its own transfers (T3, T5);
// organizations, accounts, sellers of record, tax and exchange rates, expiry
// and tokens are an admin's.
func CommandParty(v View, cmd proto.Message) (Party, error) {
	payer := func(account, subject string) (Party, error) {
		return Party{Role: PartyPayer, Account: account, Subject: subject}, nil
	}
	located := func(kind PricingKind, field, id string) (Party, error) {
		owner, err := locate(v, kind, field, id)
		if err != nil {
			return Party{}, err
		}
		return payer(owner, kindNoun(kind)+" "+id)
	}
	transfer := func(id string) (Transfer, error) { return loadTransfer(v, id) }
	switch c := cmd.(type) {
	case *billingv1.InviteBillSource:
		return payer(c.GetPayerAccountId(), "an invitation from payer "+c.GetPayerAccountId())
	case *billingv1.AcceptTransfer, *billingv1.DeclineTransfer:
		id := c.ProtoReflect().Get(c.ProtoReflect().Descriptor().Fields().ByName("transfer_id")).String()
		t, err := transfer(id)
		if err != nil {
			return Party{}, err
		}
		return Party{Role: PartySource, Account: t.Source(), Subject: "transfer " + id + " (source " + t.Source() + ")"}, nil
	case *billingv1.CancelTransfer:
		t, err := transfer(c.GetTransferId())
		if err != nil {
			return Party{}, err
		}
		return payer(t.Payer(), "transfer "+t.ID()+" (payer "+t.Payer()+")")
	case *billingv1.WithdrawTransfer:
		t, err := transfer(c.GetTransferId())
		if err != nil {
			return Party{}, err
		}
		if by := c.GetWithdrawnBy(); by != "" && by == t.Source() {
			return Party{Role: PartySource, Account: t.Source(), Subject: "transfer " + t.ID() + " (source " + t.Source() + ")"}, nil
		}
		return payer(t.Payer(), "transfer "+t.ID()+" (payer "+t.Payer()+")")
	case *billingv1.CreatePricingRule:
		return payer(c.GetOwnerAccountId(), "pricing rules of "+c.GetOwnerAccountId())
	case *billingv1.UpdatePricingRule:
		return located(KindRule, "pricing_rule_id", c.GetPricingRuleId())
	case *billingv1.DeletePricingRule:
		return located(KindRule, "pricing_rule_id", c.GetPricingRuleId())
	case *billingv1.CreatePricingPlan:
		return payer(c.GetOwnerAccountId(), "pricing plans of "+c.GetOwnerAccountId())
	case *billingv1.UpdatePricingPlan:
		return located(KindPlan, "pricing_plan_id", c.GetPricingPlanId())
	case *billingv1.AssociatePricingRules:
		return located(KindPlan, "pricing_plan_id", c.GetPricingPlanId())
	case *billingv1.DisassociatePricingRules:
		return located(KindPlan, "pricing_plan_id", c.GetPricingPlanId())
	case *billingv1.DeletePricingPlan:
		return located(KindPlan, "pricing_plan_id", c.GetPricingPlanId())
	case *billingv1.CreateBillingGroup:
		return payer(c.GetOwnerAccountId(), "billing groups of "+c.GetOwnerAccountId())
	case *billingv1.UpdateBillingGroup:
		return located(KindGroup, "billing_group_id", c.GetBillingGroupId())
	case *billingv1.AssociateAccounts:
		return located(KindGroup, "billing_group_id", c.GetBillingGroupId())
	case *billingv1.DisassociateAccounts:
		return located(KindGroup, "billing_group_id", c.GetBillingGroupId())
	case *billingv1.DeleteBillingGroup:
		return located(KindGroup, "billing_group_id", c.GetBillingGroupId())
	case *billingv1.CreateCustomLineItem:
		return located(KindGroup, "billing_group_id", c.GetBillingGroupId())
	case *billingv1.UpdateCustomLineItem:
		return located(KindItem, "custom_line_item_id", c.GetCustomLineItemId())
	case *billingv1.DeleteCustomLineItem:
		return located(KindItem, "custom_line_item_id", c.GetCustomLineItemId())
	case *billingv1.SetTaxSettings:
		if err := checkAccountID("account_id", c.GetAccountId()); err != nil {
			return Party{}, err
		}
		owner, err := v.AccountOwner(c.GetAccountId())
		if err != nil {
			return Party{}, err
		}
		if owner == "" {
			return Party{}, Reject(CodeNotFound, "account %s belongs to no registered organization", c.GetAccountId())
		}
		return payer(owner, "tax settings of account "+c.GetAccountId()+" (organization "+owner+")")
	case *billingv1.CreateInvoiceUnit:
		return payer(c.GetOwnerAccountId(), "invoice units of "+c.GetOwnerAccountId())
	case *billingv1.UpdateInvoiceUnit:
		return invoiceUnitParty(v, c.GetInvoiceUnitId())
	case *billingv1.DeleteInvoiceUnit:
		return invoiceUnitParty(v, c.GetInvoiceUnitId())
	case *billingv1.SetPaymentProfile:
		return payer(c.GetPayerAccountId(), "payment profiles of "+c.GetPayerAccountId())
	case *billingv1.CloseMonth:
		return payer(c.GetPayerAccountId(), "the month close of "+c.GetPayerAccountId())
	case *billingv1.RecordPayment:
		return payer(c.GetPayerAccountId(), "payments of "+c.GetPayerAccountId())
	case *billingv1.RefundPayment:
		return payer(c.GetPayerAccountId(), "payments of "+c.GetPayerAccountId())
	case *billingv1.ApplyCredit:
		return payer(c.GetPayerAccountId(), "credit notes of "+c.GetPayerAccountId())
	case *billingv1.CreateBillingView:
		return payer(c.GetOwnerAccountId(), "billing views of "+c.GetOwnerAccountId())
	case *billingv1.GrantBillingView:
		return billingViewParty(v, c.GetBillingViewId())
	case *billingv1.RevokeBillingView:
		return billingViewParty(v, c.GetBillingViewId())
	case *billingv1.DeleteBillingView:
		return billingViewParty(v, c.GetBillingViewId())
	default:
		// RegisterOrganization, AddAccount, ExpireTransfer, SetSellerOfRecord,
		// SetTaxRate, SetExchangeRate, CreateToken, RevokeToken and any command
		// without a rule here.
		return Party{Role: PartyAdminOnly}, nil
	}
}

// billingViewParty is the owner of a billing view, deleted or not (the
// decision then answers NOT_FOUND to the owner, while anyone else is denied).
func billingViewParty(v View, id string) (Party, error) {
	b, err := FindBillingView(v, id)
	if err != nil {
		return Party{}, err
	}
	return Party{Role: PartyPayer, Account: b.Owner(), Subject: "billing view " + b.ID() + " (owner " + b.Owner() + ")"}, nil
}

// invoiceUnitParty is the owner of an invoice unit, found through its index.
func invoiceUnitParty(v View, id string) (Party, error) {
	if err := checkID("invoice_unit_id", id); err != nil {
		return Party{}, err
	}
	evs, err := v.Events(InvoiceUnitIndexStream(id))
	if err != nil {
		return Party{}, err
	}
	for _, e := range evs {
		if r := e.GetInvoiceUnitIdReserved(); r != nil {
			return Party{Role: PartyPayer, Account: r.GetOwnerAccountId(), Subject: "invoice unit " + id + " (owner " + r.GetOwnerAccountId() + ")"}, nil
		}
	}
	return Party{}, Reject(CodeNotFound, "invoice unit %s does not exist", id)
}

// BillingGroupOwner returns the payer that owns a billing group (NOT_FOUND when
// the id was never used).
func BillingGroupOwner(v View, id string) (string, error) {
	return locate(v, KindGroup, "billing_group_id", id)
}

// ---------------------------------------------------------------------------
// Which months a payer paid for (A3).

// PaidFor reports whether payer paid for organization source in month m: it
// was the source's direct payer that month (the owner of its pro forma
// prices, P7) or its bill receiver (the top of a two-level chain, T7). An
// organization always "pays for" itself. A transfer's months stay paid for
// after it ends, so the payer keeps reading them (A3).
func PaidFor(v View, payer, source string, m Month) (bool, error) {
	if payer == source {
		return true, nil
	}
	org, err := v.Org(source)
	if err != nil || !org.Exists() {
		return false, err
	}
	if org.DirectPayerIn(m) == payer {
		return true, nil
	}
	top, err := ResolvePayer(v, source, m)
	return top == payer, err
}

// EverPaidFor reports whether payer paid for source in some month, or will:
// an accepted (or withdrawn) transfer from source to payer, or, in a
// two-level chain, to the payer's own source.
func EverPaidFor(v View, payer, source string) (bool, error) {
	if payer == source {
		return true, nil
	}
	org, err := v.Org(payer)
	if err != nil {
		return false, err
	}
	for _, links := range []map[string]Link{org.inbound, org.indirect} {
		for _, l := range links {
			if l.source == source && (l.state == billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED || l.state == billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN) {
				return true, nil
			}
		}
	}
	return false, nil
}

// HasTransferWith reports whether payer ever invited source, whatever became
// of the invitation: the transfers a payer may list.
func HasTransferWith(v View, payer, source string) (bool, error) {
	org, err := v.Org(payer)
	if err != nil {
		return false, err
	}
	for _, l := range org.inbound {
		if l.source == source {
			return true, nil
		}
	}
	return false, nil
}
