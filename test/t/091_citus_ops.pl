# Operations on a Citus cluster (issue 19, the robustness items): a
# coordinator and two worker nodes (M365Test->citus), 24 mailboxes, against
# the simulator.
#   - the round lock: a shard move waits for a round in flight on the
#     source (the round holds its shard in Citus's placement-metadata lock),
#     sync() on the coordinator meanwhile answers "busy"; then sync() on the
#     coordinator racing the nodes' workers, with a shard move and a
#     rebalance under way: no two rounds of one account overlap in time
#     (sync_runs), 0 lost, 0 duplicated against the simulator;
#   - purge_user, export_user and disconnect called on the coordinator for
#     accounts on both worker nodes: the export complete and decrypted, the
#     rows gone from every node, the owning node's worker stops syncing;
#   - pg_dump of the coordinator (which holds every node's rows) and of each
#     node: no content, address, secret or token in clear; a restore point;
#   - the audit trail through moves and a rebalance: every node's audit_log
#     keeps its rows and still refuses TRUNCATE and DELETE; Citus refuses
#     alter_distributed_table, undistribute_table and DROP EXTENSION citus
#     on m365sync's tables; DROP EXTENSION m365sync CASCADE on the
#     coordinator, then DROP SCHEMA on every node, removes everything.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use IPC::Run;
use JSON::PP;
use Test::More;
use Time::HiRes qw(usleep time);

my $json = JSON::PP->new->canonical;
my $N = 24;
# a held answer must outlast the checks made while it is held
my $t = M365Test->citus(sim_args => [ '--latency-ms', '20' ], conf => "m365sync.http_timeout = '120s'\n");
my $coord = $t->node;
my @nodes = $t->citus_nodes;

sub q1 { my ($node, $sql) = @_; return scalar $node->safe_psql('postgres', $sql); }

# psql on a node in the background (a move, a loop of sync() calls)
sub bg_psql
{
	my ($node, $sql, %o) = @_;
	my $r = { out => '', err => '' };
	$r->{h} = IPC::Run::start([ $node->installed_command('psql'), '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres'), ($o{role} ? ('-U', $o{role}) : ()), '-c', $sql ],
		'<', \undef, '>', \$r->{out}, '2>', \$r->{err});
	return $r;
}
sub bg_wait { my ($r) = @_; $r->{h}->finish; return $? == 0; }

# Accounts due now, one transaction each (a worker's batch updates many
# accounts' rows in one transaction: one statement over several would
# deadlock with it)
sub due_now
{
	q1($coord, join '', map { "UPDATE m365sync.accounts SET next_sync_at = now() WHERE account_id = $_;\n" } @_);
}

# Rounds of one account that overlap in time, over the whole history (every node's rows).
sub overlaps
{
	my ($where) = @_;
	return q1($coord, 'SELECT count(*) FROM m365sync.sync_run_log a JOIN m365sync.sync_run_log b'
		  . ' ON b.account_id = a.account_id AND a.run_id < b.run_id'
		  . " WHERE a.started_at < coalesce(b.finished_at, 'infinity') AND b.started_at < coalesce(a.finished_at, 'infinity')"
		  . ($where ? " AND a.account_id IN ($where)" : ''));
}

# ------------------------------------------------------------ the cluster

$t->setup_app;
$t->as_admin('SELECT m365sync.distribute()');
my %mbx;
for my $i (1 .. $N)
{
	$mbx{$i} = $t->add_sim_user('contoso.example', "mbx$i\@contoso.example")->{id};
	$t->ledger_mailbox($i, $mbx{$i});
}
$t->admin_consent('contoso.example');
$t->as_admin(join '', map { "SELECT m365sync.add_mailbox('fa-$_', 'contoso.example', 'mbx$_\@contoso.example');\n" } 1 .. $N);
# one delegated user, connected through the coordinator: a refresh token on some node
$t->add_sim_user('contoso.example', 'deleg@contoso.example');
my $deleg = $t->connect_user('fa-deleg', 'deleg@contoso.example');
like($deleg, qr/^\d+$/, 'a delegated user connects through the coordinator');
ok($coord->poll_query_until('postgres',
	'SELECT count(*) = ' . ($N + 1) . ' FROM m365sync.account_status WHERE last_sync_at IS NOT NULL', 't'),
	'every mailbox synced');

my $group_node = $t->citus_groups;
my $place = $t->citus_placement(1 .. $N);
my @groups = grep { $_ != 0 } sort keys %$group_node;
my %by_group;
push @{ $by_group{ $place->{$_} } }, $_ for 1 .. $N;
is(scalar(grep { @{ $by_group{$_} || [] } } @groups), 2, 'the mailboxes are on both worker nodes');
my ($g1, $g2) = @groups;
# an audited act on each worker node (export_user works there too): each node's audit_log has rows
is(join(',', map { q1($_, "SELECT jsonb_array_length(m365sync.export_user('fa-$N') -> 'accounts')") } $t->workers), '1,1',
	'export_user on each worker node');
# every node's audit rows before any move: count/max id, and a digest of the rows
my $audit_q = "SELECT count(*) || '/' || coalesce(max(audit_id), 0) FROM m365sync.audit_log";
sub audit_sum
{
	my ($max) = @_;
	return "SELECT md5(coalesce(string_agg(audit_id || ':' || at || ':' || act || ':' || coalesce(flowagent_user, '')"
	  . ", ',' ORDER BY audit_id), '')) FROM m365sync.audit_log WHERE audit_id <= $max";
}
my %audit_before = map { $_->name => q1($_, $audit_q) } @nodes;
my %audit_max = map { $_ => (split m{/}, $audit_before{$_})[1] } keys %audit_before;
my %audit_sum_before = map { $_->name => q1($_, audit_sum($audit_max{ $_->name })) } @nodes;

# ------------------------------------------------------------ a move waits for a round in flight

{
	my $acc = $by_group{$g1}[0];
	my ($src, $dst) = ($group_node->{$g1}, $group_node->{$g2});
	my $shard = $t->citus_shard_of($acc);
	$t->ledger_ol_create($acc);
	$t->sim('POST', '/_sim/faults', { route => "/users/\Q$mbx{$acc}\E/.*delta", kind => 'pause', count => 1 });
	$t->ledger_fa_create($acc);    # wakes the owning node's worker at commit
	my $paused = 0;
	for (1 .. 600) { last if ($paused = $t->sim('GET', '/_sim/stats')->{paused}) >= 1; usleep(100_000); }
	is($paused, 1, 'a round of the account is in flight on the source node (its delta answer held)');
	my $run = q1($coord, "SELECT run_id FROM m365sync.sync_run_log WHERE account_id = $acc AND status = 'running'");
	is(($run || 0) >> 48, $g1, '... run by the source node\'s worker');
	is($t->as_admin("SELECT status FROM m365sync.sync($acc)"), 'busy',
		'sync() of the account on the coordinator meanwhile: busy (the round lock is taken on the owning node)');

	my $mv = bg_psql($coord, "SELECT citus_move_shard_placement($shard, '127.0.0.1', " . $src->port
		  . ", '127.0.0.1', " . $dst->port . ", shard_transfer_mode => 'block_writes'); SELECT clock_timestamp()");
	ok($src->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 8 AND NOT granted", 't'),
		'the shard move waits on the source node for the round');
	is($t->citus_placement($acc)->{$acc}, $g1, 'the placement has not moved while the round runs');

	$t->sim('POST', '/_sim/release', {});
	ok(bg_wait($mv), 'the move completes once the round is over') or diag($mv->{err});
	my ($moved_at) = $mv->{out} =~ /(\d{4}-\d\d-\d\d [\d:.+-]+)\s*$/;
	is($t->citus_placement($acc)->{$acc}, $g2, 'the account is on the destination');
	is(q1($coord, "SELECT status || ':' || (finished_at <= '$moved_at')::text FROM m365sync.sync_run_log"
		  . " WHERE account_id = $acc AND run_id = $run"),
		'ok:true', 'the round in flight finished on the source, before the move switched the placement');
	$t->ledger_ol_create($acc);
	$t->ledger_settle('the account moved under a round in flight', $acc);
	is(q1($coord, "SELECT string_agg(DISTINCT (run_id >> 48)::text, ',') FROM m365sync.sync_run_log"
		  . " WHERE account_id = $acc AND started_at > '$moved_at'"),
		$g2, 'its rounds after the move run on the destination only');
	is(overlaps($acc), '0', 'no two rounds of the account overlap in time');
}

# ------------------------------------------------------------ sync() on the coordinator racing the workers

my @race = ((grep { $place->{$_} == $g1 } 2 .. $N)[ 0 .. 3 ], (grep { $place->{$_} == $g2 } 2 .. $N)[ 0 .. 3 ]);
{
	my $script = join '', map { my $a = $_; map { "SELECT status FROM m365sync.sync($a);\n" } 1 .. 1 } (@race) x 12;
	my $race_from = q1($coord, 'SELECT clock_timestamp()');
	my $loop = bg_psql($coord, $script, role => 'dba');
	for my $wave (1 .. 3)
	{
		for my $acc (@race) { $t->ledger_fa_create($acc); $t->ledger_ol_create($acc); }
		due_now(@race);
		if ($wave == 1)
		{
			# a shard of the race's accounts to the other node (logical replication), with rounds in flight
			my $shard = $t->citus_shard_of($race[0]);
			q1($coord, "SELECT citus_move_shard_placement($shard, '127.0.0.1', " . $group_node->{$g1}->port
				  . ", '127.0.0.1', " . $group_node->{$g2}->port . ')');
		}
		if ($wave == 2)
		{
			q1($coord, 'SELECT citus_rebalance_start()');
			q1($coord, 'SELECT citus_rebalance_wait()');
		}
	}
	ok(bg_wait($loop), 'sync() called on the coordinator ' . (12 * @race) . ' times while the workers ran')
	  or diag($loop->{err});
	my %st;
	$st{$_}++ for split /\n/, $loop->{out};
	ok(($st{ok} // 0) > 0, "sync() on the coordinator ran rounds (ok: " . ($st{ok} // 0) . ', busy: ' . ($st{busy} // 0) . ')');
	$t->ledger_settle('sync() on the coordinator racing the workers, a move and a rebalance', @race);
	my $by = q1($coord, "SELECT count(DISTINCT run_id >> 48) FROM m365sync.sync_run_log WHERE started_at > '$race_from'"
		  . ' AND account_id IN (' . join(',', @race) . ')');
	is($by, '3', 'rounds of the race\'s accounts ran on the coordinator and on both worker nodes');
	is(overlaps(), '0', 'sync_runs: no two rounds of one account overlap in time, on any node');
	# (the workers keep syncing: a round may be under way now, none may be stuck)
	is(q1($coord, "SELECT count(*) FROM m365sync.sync_run_log WHERE status = 'running'"
		  . " AND started_at < now() - interval '2 minutes'"), '0', 'no round left running');
}
$place = $t->citus_placement(1 .. $N);

# ------------------------------------------------------------ privacy acts on the coordinator

my @tables = qw(accounts calendars events outbox conflicts sync_run_log subscriptions account_wakeups data_keys removed_events account_routes);
sub rows_of
{
	my ($node, $ids) = @_;
	return q1($node, "SELECT " . join(" + ", map { "(SELECT count(*) FROM m365sync.$_ WHERE account_id IN ($ids))" } @tables)
		  . " + (SELECT count(*) FROM m365sync.user_accounts WHERE account_id IN ($ids))");
}
{
	my ($p1) = grep { $place->{$_} == $g1 } @race;
	my ($p2) = grep { $place->{$_} == $g2 } @race;
	for my $acc ($p1, $p2)
	{
		my $x = $json->decode($t->as_privacy("SELECT m365sync.export_user('fa-$acc')"));
		my $a = $x->{accounts}[0] || {};
		my %subjects = map { ($_->{content}{subject} // '') => 1 } @{ $a->{events} || [] };
		my $m = $t->ledger_marker;
		my @want = sort keys %{ $t->{ledger}{expect}{$acc} };
		is_deeply([ sort grep { /^\Q$m\E/ } keys %subjects ], \@want,
			"export_user on the coordinator (account on node group $place->{$acc}): every event, decrypted");
		is($a->{mailbox}, "mbx$acc\@contoso.example", '... with the mailbox address decrypted');
		ok(@{ $a->{calendars} || [] } && $a->{calendars}[0]{name} ne '', '... and its calendars');
	}
	my $ids = "$p1, $p2";
	ok(rows_of($coord, $ids) > 0, 'the two users have rows before the purge');
	# Crypto-shredding on a cluster: a session on the coordinator and one on
	# the node holding the shards each read a copy of an event (as a backup
	# would hold it), so each has $p1's data key cached; the purge must drop
	# it from both.
	my @readers;
	for my $n ($coord, $group_node->{ $place->{$p1} })
	{
		q1($n, "CREATE TABLE public.tap_bk AS SELECT account_id, event_id, content FROM m365sync.events"
			  . " WHERE account_id = $p1 AND event_type <> 'seriesMaster' LIMIT 1");
		my $bg = $n->background_psql('postgres', on_error_stop => 0);
		is($bg->query_safe("SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) ->> 'subject' IS NOT NULL"
				  . " FROM public.tap_bk"), 't', $n->name . ': a session reads a copy of the event (its key cached)');
		push @readers, [ $n, $bg ];
	}
	$t->as_privacy("SELECT m365sync.purge_user('fa-$p1'); SELECT m365sync.purge_user('fa-$p2')");
	for my $r (@readers)
	{
		my ($n, $bg) = @$r;
		my ($out, $failed) = $bg->query("SELECT m365sync._decrypt_jsonb('events', 'content', account_id, event_id, content) FROM public.tap_bk");
		ok($failed && $bg->{stderr} =~ /could not decrypt events\.content/,
			$n->name . ': after purge_user on the coordinator, the cached key is gone: the copy does not decrypt');
		unlike($out, qr/\Q@{[ $t->ledger_marker ]}\E|subject/, '... and nothing of it is shown');
		$bg->quit;
		q1($n, 'DROP TABLE public.tap_bk');
	}
	is(rows_of($_, $ids), '0', $_->name . ': purge_user on the coordinator left no row of either user') for @nodes;
	is(q1($coord, "SELECT count(*) FROM m365sync.audit_log WHERE act = 'purge' AND flowagent_user IN ('fa-$p1', 'fa-$p2')"),
		'2', 'both purges are audited');

	# disconnect: an app-only user on one node, the delegated user wherever it is
	my ($p3) = grep { $place->{$_} == $g2 } grep { $_ != $p2 } @race;
	my $dg = $t->citus_placement($deleg)->{$deleg};
	$t->as_user("fa-$p3", 'SELECT m365sync.disconnect()');
	$t->as_user('fa-deleg', 'SELECT m365sync.disconnect()');
	is(rows_of($_, "$p3, $deleg"), '0', $_->name . ': disconnect on the coordinator left no row') for @nodes;
	$t->sim_clear_log;
	my $since = q1($coord, 'SELECT clock_timestamp()');
	$t->ledger_ol_create($_) for ($p1, $p3);
	due_now(split /\n/, q1($coord, 'SELECT account_id FROM m365sync.accounts'));
	my $left = q1($coord, 'SELECT count(*) FROM m365sync.accounts');
	ok($coord->poll_query_until('postgres',
		"SELECT count(DISTINCT account_id) = $left FROM m365sync.sync_run_log WHERE started_at > '$since' AND status <> 'running'", 't'),
		'every other account had a round since (on both nodes)');
	my @hits = grep { my $p = $_->{path}; grep { index($p, $mbx{$_}) >= 0 } ($p1, $p2, $p3) } @{ $t->sim_log };
	is(scalar(@hits), 0, 'no node asked Microsoft for a purged or disconnected mailbox afterwards');
	note("delegated user was on node group $dg");
}

# ------------------------------------------------------------ pg_dump

{
	my $m = $t->ledger_marker;
	my $secret = $t->{client_secret};
	my $n_events = q1($coord, 'SELECT count(*) FROM m365sync.events');
	for my $node (@nodes)
	{
		my ($rc, $dump, $err) = $t->run_client('pg_dump', '-d', $node->connstr('postgres'));
		is($rc, 0, $node->name . ': pg_dump') or diag($err);
		my @leaks = grep { $dump =~ $_ } (qr/\Q$m\E/, qr/mbx\d+\@contoso/, qr/deleg\@contoso/, qr/\Q$secret\E/, qr/eyJ[A-Za-z0-9_-]{16,}/);
		is(scalar(@leaks), 0, $node->name . ': the dump holds no event content, address, client secret or token in clear')
		  or diag("@leaks");
		if ($node != $coord)
		{
			my @shards = $dump =~ /^COPY m365sync\.(\w+_\d+) /mg;
			is(scalar(@shards), 0, $node->name . ': its dump holds no shard (Citus hides them from pg_dump: back up nodes physically)')
			  or diag("@shards[0 .. 4]");
		}
		if ($node == $coord)
		{
			my ($copy) = $dump =~ /^COPY m365sync\.events .*?\n(.*?)^\\\.$/ms;
			my $rows = () = ($copy // '') =~ /\n/g;
			is($rows, $n_events, "the coordinator's dump holds every node's events ($n_events, encrypted)");
		}
	}
	like(q1($coord, "SELECT count(*) FROM citus_create_restore_point('m365sync-test')"), qr/^1$/,
		'citus_create_restore_point() marks a consistent point on every node');
}

# ------------------------------------------------------------ the audit trail through Citus's operations

{
	my %now = map { $_->name => q1($_, $audit_q) } @nodes;
	for my $node (@nodes)
	{
		my ($n0, $max0) = split m{/}, $audit_before{ $node->name };
		is(q1($node, audit_sum($max0)), $audit_sum_before{ $node->name },
			$node->name . ": after two moves and a rebalance every audit row is still there, unchanged ($n0 rows; now $now{ $node->name })");
		my ($o, $e) = ('', '');
		$node->psql('postgres', 'TRUNCATE m365sync.audit_log', stdout => \$o, stderr => \$e);
		like($e, qr/ERROR/, $node->name . ': audit_log still refuses TRUNCATE');
		($o, $e) = ('', '');
		$node->psql('postgres', 'DELETE FROM m365sync.audit_log', stdout => \$o, stderr => \$e);
		like($e, qr/ERROR/, $node->name . ': ... and a DELETE of recent rows');
	}
	# Citus refuses to rewrite a table an extension owns: no shard count
	# change, no undistribute of m365sync's tables (README)
	for my $op ("alter_distributed_table('m365sync.accounts', shard_count := 4, cascade_to_colocated := true)",
		"undistribute_table('m365sync.events', cascade_via_foreign_keys := true)")
	{
		my ($o, $e) = ('', '');
		$coord->psql('postgres', "SELECT $op", stdout => \$o, stderr => \$e);
		like($e, qr/cannot alter table because an extension depends on it/, (split /\(/, $op)[0] . ' of an m365sync table: refused by Citus');
	}
	my ($o, $e) = ('', '');
	$coord->psql('postgres', 'DROP EXTENSION citus', stdout => \$o, stderr => \$e);
	like($e, qr/extension m365sync depends on extension citus/, 'DROP EXTENSION citus: refused while m365sync is installed');
	is(q1($coord, audit_sum($audit_max{coord})), $audit_sum_before{coord}, '... the coordinator\'s audit rows unchanged');

	# DROP EXTENSION m365sync on the coordinator: a node's shards carry
	# policies on an m365sync function, and Citus drops the extension on the
	# nodes first, so only CASCADE goes through (README); every node's
	# shards and audit_log go with it (dropped, no TRUNCATE meets the trigger)
	($o, $e) = ('', '');
	$coord->psql('postgres', 'DROP EXTENSION m365sync', stdout => \$o, stderr => \$e);
	like($e, qr/cannot drop extension m365sync because other objects depend on it/,
		'DROP EXTENSION m365sync without CASCADE: refused (the shards\' policies on the nodes)');
	q1($coord, 'DROP EXTENSION m365sync CASCADE');
	my $left = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'm365sync'";
	is(join(',', map { q1($_, "SELECT count(*) FROM pg_extension WHERE extname = 'm365sync'") } @nodes), '0,0,0',
		'DROP EXTENSION m365sync CASCADE on the coordinator drops the extension on every node');
	note('left in schema m365sync: ' . join(' ', map { $_->name . ':' . q1($_, $left) } @nodes));
	# what Citus leaves behind (shards, the coordinator's copies of the
	# sequences): gone with the schema on every node (README)
	q1($coord, "SELECT bool_and(success) FROM run_command_on_all_nodes('DROP SCHEMA IF EXISTS m365sync CASCADE')");
	is(join(',', map { q1($_, $left) } @nodes), '0,0,0',
		'then DROP SCHEMA m365sync CASCADE on every node: no shard, no audit_log, nothing of m365sync is left');
}

done_testing();
