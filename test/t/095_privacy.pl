# Privacy and access (issue 23), the parts that need Microsoft (the
# simulator) and the worker: add_mailbox refuses a mailbox another FlowAgent
# user connected; the operator cannot export; every privileged act of a real
# connect/consent/add_mailbox/disconnect flow is in the audit trail; the
# worker prunes audit rows past the retention and no others.
use strict;
use warnings;
use M365Test;
use Test::More;

my $t = M365Test->new(name => 'privacy');
my $node = $t->node;
my ($out, $st, $msg, $err);

$t->setup_app;
my $megan = $t->add_sim_user('contoso.example', 'meganb@contoso.example');
$t->add_sim_user('contoso.example', 'room1@contoso.example');
$t->admin_consent('contoso.example');

# fa-bob connects his own mailbox (delegated sign-in).
my $bob = $t->connect_user('fa-bob', 'meganb@contoso.example');
like($bob, qr/^\d+$/, 'fa-bob connected meganb');

# ---- reproduction: the operator's shadow account on fa-bob's mailbox ----
($out, $st, $msg, $err) = $t->sql(
	"SELECT m365sync.add_mailbox('fa-operator-shadow', 'contoso.example', 'meganb\@contoso.example')", role => 'dba');
is($st, '42710', 'add_mailbox refuses a mailbox another FlowAgent user connected (42710)');
like($msg, qr/already connected by another FlowAgent user/, '... saying so');
like($err, qr/HINT:.*purge_user/, '... with a hint');
unlike($msg . $err, qr/fa-bob|meganb/, '... naming neither the other user nor the address');
# the same mailbox named by its Graph user id is the same mailbox
($out, $st) = $t->sql(
	"SELECT m365sync.add_mailbox('fa-operator-shadow', 'contoso.example', '$megan->{id}')", role => 'dba');
is($st, '42710', 'also when the mailbox is named by its Graph user id');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.accounts WHERE flowagent_user = 'fa-operator-shadow'"),
	'0', 'no shadow account was made');

# ---- the operator cannot export; the privacy officer can ----
($out, $st) = $t->sql("SELECT m365sync.export_user('fa-bob')", role => 'dba');
is($st, '42501', 'the operator (m365sync_admin) cannot export a user');
($out, $st) = $t->sql("SELECT m365sync.purge_user('fa-bob')", role => 'dba');
is($st, '42501', 'the operator cannot purge a user');
is($t->as_privacy("SELECT jsonb_array_length(m365sync.export_user('fa-bob') -> 'accounts')"), '1',
	'the privacy officer (m365sync_privacy) exports fa-bob');

# ---- app-only mailboxes: a free mailbox, and the same user again ----
my $room = $t->as_admin("SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')");
like($room, qr/^\d+$/, 'a mailbox nobody connected can be added');
is($t->as_admin("SELECT m365sync.add_mailbox('room-user', 'contoso.example', 'room1\@contoso.example')"), $room,
	'the same FlowAgent user adding it again gets the same account');
($out, $st) = $t->sql(
	"SELECT m365sync.add_mailbox('room-user-2', 'contoso.example', 'room1\@contoso.example')", role => 'dba');
is($st, '42710', 'another FlowAgent user cannot add it too');

# ---- fa-bob disconnects: the mailbox is free again ----
$t->as_user('fa-bob', 'SELECT m365sync.disconnect()');
my $carol = $t->as_admin("SELECT m365sync.add_mailbox('fa-carol', 'contoso.example', 'meganb\@contoso.example')");
like($carol, qr/^\d+$/, 'after the disconnect another FlowAgent user may add the mailbox');

# ---- the audit trail of all this ----
is($t->as_admin(q{SELECT string_agg(act || ':' || db_role || ':' || coalesce(flowagent_user, '-')
                                     || ':' || (account_id IS NOT NULL), ' ' ORDER BY at)
                    FROM m365sync.audit_trail}),
	"configure:dba:-:false consent:dba:-:false connect:flowagent:fa-bob:true export:privacy:fa-bob:false "
	  . "add_mailbox:dba:room-user:true add_mailbox:dba:room-user:true disconnect:flowagent:fa-bob:false "
	  . "add_mailbox:dba:fa-carol:true",
	'one row per privileged act, with role, user and account; none for refused acts');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.audit_log a WHERE a::text ~* '(meganb|room1|contoso|secret)'"),
	'0', 'no address, tenant or secret in the audit trail');

# ---- retention: the worker prunes expired rows, and only those ----
$node->safe_psql('postgres', q{
	INSERT INTO m365sync.audit_log (at, db_role, act)
	VALUES (now() - interval '40 days', 'expired_role', 'configure'),
	       (now() - interval '20 days', 'kept_role', 'configure')});
$node->append_conf('postgresql.conf', "m365sync.audit_retention = '30d'");
$node->reload;
ok($node->poll_query_until('postgres',
	"SELECT NOT EXISTS (SELECT 1 FROM m365sync.audit_log WHERE db_role = 'expired_role')"),
	'the worker prunes a row past m365sync.audit_retention');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.audit_log WHERE db_role = 'kept_role'"), '1',
	'a row within the retention stays');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.audit_log WHERE act <> 'configure' OR db_role = 'dba'"), '8',
	'the acts of this test stay');
($out, $st) = $t->sql("DELETE FROM m365sync.audit_log WHERE db_role = 'kept_role'");
is($st, '42501', 'the superuser cannot delete a row within the retention either');

done_testing();
