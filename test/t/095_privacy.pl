# Privacy and access (issue 23), the parts that need Microsoft (the
# simulator) and the worker: add_mailbox refuses a mailbox another FlowAgent
# user connected; the operator cannot export; every privileged act of a real
# connect/consent/add_mailbox/disconnect flow is in the audit trail; the
# worker prunes audit rows past the retention and no others.
use strict;
use warnings;
use M365Test;
use Test::More;
use File::Find;
use POSIX qw(strftime);

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

# ---- honest metadata: iCalUId as a keyed hash, changed_fields as Graph names ----
my $day = strftime('%Y-%m-%d', gmtime(time + 2 * 86400));
my $outlook = $t->sim('POST', "/_sim/users/$megan->{id}/events", { subject => 'Board meeting',
	start => { dateTime => "${day}T09:00:00", timeZone => 'UTC' },
	end => { dateTime => "${day}T10:00:00", timeZone => 'UTC' } });
ok(length($outlook->{iCalUId} // '') > 20, 'Outlook gave the event an iCalUId');
$node->safe_psql('postgres', "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = $bob");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM m365sync.events WHERE account_id = $bob AND graph_id = '$outlook->{id}'"),
	'the worker pulled it');
is($node->safe_psql('postgres', "SELECT ical_uid ~ '^hmac:[0-9a-f]{64}\$' FROM m365sync.events WHERE graph_id = '$outlook->{id}'"),
	't', 'events.ical_uid holds a keyed hash');
is($node->safe_psql('postgres', "SELECT count(*) FROM m365sync.events e WHERE position('$outlook->{iCalUId}' IN e::text) > 0"),
	'0', 'the iCalUId is in no clear column');
is($t->as_user('fa-bob', "SELECT ical_uid FROM m365sync.events(now(), now() + interval '10 days') WHERE graph_id = '$outlook->{id}'"),
	$outlook->{iCalUId}, 'events() returns the iCalUId itself');

# Reproduction (issue 23, 3): a made-up key in an update was stored in clear
# in outbox.changed_fields, and found in base/ and pg_wal/ after a CHECKPOINT.
my $canary = 'Layoffs-Q1-list-canary-' . M365Test::random_hex(6);
my $ev = $node->safe_psql('postgres', "SELECT event_id FROM m365sync.events WHERE graph_id = '$outlook->{id}'");
$t->as_user('fa-bob', qq{SELECT m365sync.upsert_event('{"subject": "Board meeting (moved)", "$canary": ["a", "b"]}', $ev)});
is($node->safe_psql('postgres', "SELECT changed_fields FROM m365sync.outbox WHERE event_id = $ev ORDER BY outbox_id DESC LIMIT 1"),
	'{subject}', 'changed_fields lists only the Graph property that changed');
ok($node->poll_query_until('postgres', "SELECT state = 'done' FROM m365sync.outbox WHERE event_id = $ev ORDER BY outbox_id DESC LIMIT 1"),
	'the change is pushed');
my @remote = grep { ($_->{subject} // '') eq 'Board meeting (moved)' } @{ $t->sim('GET', "/_sim/users/$megan->{id}/truth")->{events} };
is(scalar(@remote), 1, 'Outlook has the new subject');
ok(@remote && !grep({ index($_, 'canary') >= 0 } keys %{ $remote[0] }), 'the made-up key never reached Microsoft');
my $control = 'CTRL-' . M365Test::random_hex(6);
my ($ca, $cb) = (substr($control, 0, 5), substr($control, 5));
$node->safe_psql('postgres', "CREATE TABLE public.tap_plain AS SELECT '$ca' || '$cb' AS t");
$node->safe_psql('postgres', 'CHECKPOINT');
foreach my $sub ('base', 'pg_wal')
{
	my %hits = ($canary => 0, $control => 0);
	find({ no_chdir => 1, wanted => sub {
		return unless -f $_;
		open my $fh, '<:raw', $_ or return;
		local $/;
		my $data = <$fh>;
		close $fh;
		foreach my $n (keys %hits) { $hits{$n}++ if index($data, $n) >= 0; }
	} }, $node->data_dir . "/$sub");
	ok($hits{$control} > 0, "control: a plain value is found in $sub/");
	is($hits{$canary}, 0, "the made-up key is nowhere in $sub/");
}

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
