# Scale-out on Citus (issue 19): a coordinator and two worker nodes on
# localhost, each with citus and m365sync preloaded and the same master key
# file, against the simulator. m365sync.distribute() on the coordinator;
# 200 app-only mailboxes spread over both nodes; then:
#   - each node's worker syncs exactly the accounts whose shards it holds,
#     all of them (a round's run_id comes from the sequence of the node that
#     ran it: each node group has its own range, so ids never collide);
#   - FlowAgent edits through the coordinator and Outlook edits in the
#     simulator: every edited mailbox equals the simulator's truth, 0 lost,
#     0 duplicated;
#   - a FlowAgent change made on the coordinator reaches the simulator in
#     under 1 s for accounts on both nodes (the owning node's worker is woken
#     at commit; its timer is 10 s here);
#   - kill -9 of one node's sync worker, and of a whole worker node, with
#     pushes under way: 0 lost, 0 duplicated after recovery;
#   - a move of a quarter of the accounts' shards while they sync: the
#     destination takes them over, 0 lost, 0 duplicated;
#   - isolation: no FlowAgent user reads another's events through any
#     function, on the coordinator or on a worker node; the tables are
#     closed to the app on every node; no data directory holds an event's
#     content or a mailbox address in clear.
use strict;
use warnings;
use lib "$ENV{M365_SRC}/test/t/lib";
use M365Test;
use JSON::PP;
use File::Find;
use Test::More;
use Time::HiRes qw(usleep time);

my $json = JSON::PP->new->canonical;
my $N = $ENV{M365_CITUS_MAILBOXES} // 200;
# the coordinator and worker nodes w1, w2 (M365Test->citus: Citus on every
# node, the workers added, m365sync created on the coordinator)
my $t = M365Test->citus;
my $coord = $t->node;
my @workers = $t->workers;
my @nodes = $t->citus_nodes;

# ------------------------------------------------------------ helpers

sub q1 { my ($node, $sql) = @_; return scalar $node->safe_psql('postgres', $sql); }

# The ledger of edits (M365Test): FlowAgent creates through the coordinator,
# Outlook creates in the simulator, both sides compared with it.
my $marker = $t->ledger_marker;
our %expect;    # account => { subject => 1 }
*expect = ($t->{ledger}{expect} //= {});
my %mbx;        # account => simulator user id
sub next_subject { return "$marker e" . (($t->{ledger}{n} // 0) + 1); }
sub as_fa { return $t->fa_on(@_); }
sub fa_create { return $t->ledger_fa_create(@_); }
sub ol_create { return $t->ledger_ol_create(@_); }
sub remote_subjects { return $t->ledger_remote(@_); }
sub local_subjects { return $t->ledger_local(@_); }
sub settle { return $t->ledger_settle(@_); }

# account => node group holding its shards; group => node
sub placement
{
	my %shard_group = map { split /\|/ } split /\n/, q1($coord,
		"SELECT p.shardid, p.groupid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
		  . " WHERE s.logicalrelid = 'm365sync.accounts'::regclass");
	my %g;
	for (split /\n/, q1($coord, "SELECT g, get_shard_id_for_distribution_column('m365sync.accounts', g)"
		  . " FROM generate_series(1, $N) g"))
	{
		my ($acc, $shard) = split /\|/;
		$g{$acc} = $shard_group{$shard};
	}
	return \%g;
}
my %node_of_group;

sub worker_pid
{
	my ($node) = @_;
	for (1 .. 300)
	{
		my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'm365sync worker'");
		return $pid if $pid =~ /^\d+$/;
		usleep(100_000);
	}
	die 'no sync worker';
}

sub wait_up
{
	my ($node) = @_;
	for (1 .. 600)
	{
		my ($ret) = $node->psql('postgres', 'SELECT 1');
		return if $ret == 0;
		usleep(100_000);
	}
	die 'node did not come back';
}

# ------------------------------------------------------------ the cluster

is(q1($workers[1], "SELECT extversion FROM pg_extension WHERE extname = 'm365sync'"), '0.2.0',
	'CREATE EXTENSION m365sync on the coordinator reaches the worker nodes');

# distribute() without Citus: a clear error and hint
q1($coord, 'CREATE DATABASE plain');
$coord->safe_psql('plain', 'CREATE EXTENSION m365sync');
{
	my ($out, $err) = ('', '');
	$coord->psql('plain', 'SELECT m365sync.distribute()', stdout => \$out, stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/0A000: Citus is not installed/, 'distribute() without Citus: feature_not_supported');
	like($err, qr/HINT:.*CREATE EXTENSION citus/, '... with a hint naming the order of steps');
}

# rows made before distribute() (the app's registration and the
# installation's data key) move into the shards with it
$t->setup_app;
$t->as_admin('SELECT m365sync.distribute()');
$t->as_admin('SELECT m365sync.distribute()');
is(q1($coord, 'SELECT count(*) FROM m365sync.app_config') . '/' . q1($coord, 'SELECT count(*) FROM m365sync.data_keys WHERE account_id = 0'),
	'1/1', 'the app registration and the installation key made before distribute() are kept (add_mailbox below uses them)');
is(q1($coord, "SELECT count(*) FROM m365sync.audit_log WHERE act = 'distribute'"), '2', 'distribute() is audited');
is(q1($coord, "SELECT string_agg(logicalrelid::regclass::text || ':' || partmethod::text || ':' ||"
	  . " (colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'm365sync.accounts'::regclass))::text,"
	  . " ',' ORDER BY logicalrelid::regclass::text COLLATE \"C\") FROM pg_dist_partition"),
	join(',', map { "m365sync.$_" } sort(qw(account_routes:h:true account_wakeups:h:true accounts:h:true app_config:n:false calendars:h:true
		conflicts:h:true data_keys:h:true events:h:true outbox:h:true oauth_states:n:false removed_events:h:true subscriptions:h:true
		sync_run_log:h:true tenants:n:false user_accounts:n:false))),
	'distribute() twice: per-account tables hash-distributed and co-located with accounts, configuration replicated');

%node_of_group = (0 => $coord);
for my $w (@workers)
{
	my $g = q1($w, 'SELECT groupid FROM pg_dist_local_group');
	$node_of_group{$g} = $w;
}

# ------------------------------------------------------------ 200 mailboxes

my $t0 = time;
for my $i (1 .. $N)
{
	my $u = $t->add_sim_user('contoso.example', "mbx$i\@contoso.example");
	$mbx{$i} = $u->{id};
	$t->ledger_mailbox($i, $u->{id});
}
$t->admin_consent('contoso.example');
$t->as_admin(join '', map { "SELECT m365sync.add_mailbox('fa-$_', 'contoso.example', 'mbx$_\@contoso.example');\n" } 1 .. $N);
is(q1($coord, 'SELECT count(*), min(account_id), max(account_id) FROM m365sync.accounts'), "$N|1|$N",
	"$N mailboxes added through the coordinator");

ok($coord->poll_query_until('postgres',
	"SELECT count(*) = $N FROM m365sync.account_status WHERE last_sync_at IS NOT NULL", 't'),
	"every mailbox synced (" . sprintf('%.0f s', time - $t0) . ")");

my $place = placement();
my %by_group;
push @{ $by_group{ $place->{$_} } }, $_ for sort { $a <=> $b } keys %$place;
my @groups = sort keys %by_group;
is(scalar(@groups), 2, 'the accounts are spread over both worker nodes');
ok(!exists $by_group{0}, 'the coordinator holds no account');

# Who ran each round: the node group in run_id's top bits.
sub runs_by_node
{
	my ($since) = @_;
	my %r;
	for (split /\n/, q1($coord, 'SELECT account_id, run_id >> 48 FROM m365sync.sync_run_log'
		  . ($since ? " WHERE started_at > '$since'" : '')))
	{
		my ($acc, $g) = split /\|/;
		$r{$acc}{$g}++;
	}
	return \%r;
}
my $runs = runs_by_node();
my @wrong = grep { my $a = $_; grep { $_ != $place->{$a} } keys %{ $runs->{$a} } } keys %$runs;
is(scalar(@wrong), 0, 'sync_runs: every round ran on the node holding the account\'s shards');
is(scalar(grep { $runs->{$_}{ $place->{$_} } } 1 .. $N), $N, 'sync_runs: every account was synced by its node');
is(q1($coord, 'SELECT count(DISTINCT run_id) = count(*) FROM m365sync.sync_run_log'), 't', 'run ids unique across nodes');

# ------------------------------------------------------------ edits on both sides

my @ga = @{ $by_group{ $groups[0] } };
my @gb = @{ $by_group{ $groups[1] } };
my @edited = (@ga[ 0 .. 7 ], @gb[ 0 .. 7 ]);
for my $acc (@edited)
{
	fa_create($acc) for 1 .. 2;
	ol_create($acc) for 1 .. 2;
}
settle('FlowAgent and Outlook edits on accounts of both nodes', @edited);
is(q1($coord, 'SELECT count(DISTINCT event_id) = count(*) FROM m365sync.events'), 't',
	'event ids unique across nodes');

# ------------------------------------------------------------ latency of the hand-off

# No round scheduled for an hour, so a node's worker runs only when woken
# (its idle timer is 10 s): what follows measures the hand-off, not a round
# that happened to be under way or due.
# Every account's next round set, one transaction per account: a worker's
# batch updates many accounts' rows in one transaction, so one statement over
# all of them could deadlock with it.
sub schedule_all
{
	my ($when) = @_;
	my @ids = split /\n/, q1($coord, 'SELECT account_id FROM m365sync.accounts ORDER BY 1');
	q1($coord, join '', map { "UPDATE m365sync.accounts SET next_sync_at = $when WHERE account_id = $_;\n" } @ids);
}

sub quiet
{
	schedule_all("now() + interval '1 hour'");
	$coord->poll_query_until('postgres', "SELECT count(*) = 0 FROM m365sync.sync_run_log WHERE status = 'running'", 't')
	  or die 'rounds did not stop';
	schedule_all("now() + interval '1 hour'");
}
quiet();

for my $acc ($ga[8], $gb[8])
{
	my @ms;
	for (1 .. 2)
	{
		quiet();	# no round is due for an hour: only the wake at commit can push it
		my $t1 = time;
		my $subject = next_subject();
		fa_create($acc);
		my $seen;
		while (time - $t1 < 15)
		{
			if (remote_subjects($acc)->{$subject}) { $seen = time - $t1; last; }
			usleep(20_000);
		}
		push @ms, defined $seen ? sprintf('%.0f', 1000 * $seen) : 'never';
	}
	ok(!grep({ $_ eq 'never' } @ms),
		"a change committed on the coordinator reaches the simulator, woken at commit (node group $place->{$acc}: @ms ms)");
}

# ------------------------------------------------------------ sync() and webhooks on the coordinator

like($t->as_admin("SELECT string_agg(status, ',') FROM m365sync.sync($ga[9])"), qr/^(ok|busy)$/,
	'sync() of an account on a worker node, called on the coordinator');
like($t->as_admin("SELECT count(*) FROM m365sync.sync_runs WHERE account_id IN ($ga[9], $gb[9])"), qr/^[1-9]\d*$/,
	'sync_runs on the coordinator');

# FlowAgent's webhook handler calls handle_notification() on the coordinator:
# the notified account's node pulls at once, with no round due meanwhile.
{
	my $rx = $t->start_receiver;
	$_->safe_psql('postgres', "ALTER SYSTEM SET m365sync.notification_url = '$rx/notify';"
		  . " ALTER SYSTEM SET m365sync.lifecycle_url = '$rx/lifecycle'; SELECT pg_reload_conf();") for @nodes;
	ok($coord->poll_query_until('postgres',
		"SELECT count(DISTINCT account_id) = 2 FROM m365sync.subscriptions WHERE account_id IN ($ga[9], $gb[9])", 't'),
		'each node subscribes to the changes of its accounts');
	for my $acc ($ga[9], $gb[9])
	{
		my @ms;
		for (1 .. 2)
		{
			quiet();	# no round is due for an hour: only the notification can bring it
			my $t1 = time;
			my $subject = next_subject();
			ol_create($acc);
			my $seen;
			while (time - $t1 < 30)
			{
				my $l = local_subjects($acc);
				if ($l && $l->{$subject}) { $seen = time - $t1; last; }
				usleep(50_000);
			}
			push @ms, defined $seen ? sprintf('%.0f', 1000 * $seen) : 'never';
		}
		ok(!grep({ $_ eq 'never' } @ms),
			"an Outlook change notified through the coordinator reaches events(), the node woken by it (node group $place->{$acc}: @ms ms)");
	}
	ok(!grep({ ($_->{sqlstate} // '') ne '' } @{ $t->receiver_log }) && grep({ $_->{kind} eq 'notification' } @{ $t->receiver_log }),
		'every notification was accepted by handle_notification() on the coordinator');
}

schedule_all('now()');

# ------------------------------------------------------------ kill -9

# one node's sync worker, with pushes under way on it
{
	my $w = $node_of_group{ $groups[0] };
	my @accs = @ga[ 10 .. 19 ];
	fa_create($_) for @accs;
	ol_create($_) for @accs[ 0 .. 4 ];
	my $pid = worker_pid($w);
	kill 'KILL', $pid;
	wait_up($w);
	fa_create($_) for @accs[ 0 .. 4 ];
	settle('kill -9 of a node\'s sync worker mid-round', @accs);
}

# a whole worker node
{
	my $w = $node_of_group{ $groups[1] };
	my @accs = @gb[ 10 .. 19 ];
	fa_create($_) for @accs;
	ol_create($_) for @accs[ 0 .. 4 ];
	my $postmaster = $w->{_pid};
	$w->kill9;
	usleep(50_000) while kill(0, $postmaster);
	my $started = 0;
	for (1 .. 60)
	{
		$w->{_pid} = undef;
		last if ($started = $w->start(fail_ok => 1));
		sleep 1;
	}
	ok($started, 'the killed worker node restarts');
	fa_create($_, tries => 600) for @accs[ 5 .. 9 ];
	settle('kill -9 of a whole worker node mid-round', @accs);
}

# ------------------------------------------------------------ shard move

{
	my ($from, $to) = ($node_of_group{ $groups[0] }, $node_of_group{ $groups[1] });
	my @shards = split /\n/, q1($coord, "SELECT p.shardid FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
		  . " WHERE s.logicalrelid = 'm365sync.accounts'::regclass AND p.groupid = $groups[0] ORDER BY 1 LIMIT 2");
	my %moving = map { $_ => 1 } split /\n/, q1($coord,
		"SELECT g FROM generate_series(1, $N) g WHERE get_shard_id_for_distribution_column('m365sync.accounts', g)"
		  . " IN (" . join(',', @shards) . ')');
	my @accs = (sort { $a <=> $b } keys %moving)[ 0 .. 11 ];
	my $share = scalar(keys %moving) / $N;
	ok($share >= 0.2 && $share <= 0.3, sprintf('moving %.0f%% of the accounts', 100 * $share));
	fa_create($_) for @accs;
	ol_create($_) for @accs[ 0 .. 5 ];
	my $moved_at = q1($coord, 'SELECT now()');
	for my $s (@shards)
	{
		q1($coord, "SELECT citus_move_shard_placement($s, '127.0.0.1', " . $from->port . ", '127.0.0.1', " . $to->port
			  . ", shard_transfer_mode => 'block_writes')");
	}
	fa_create($_) for @accs[ 6 .. 11 ];
	my $after = placement();
	is(scalar(grep { $after->{$_} != $groups[1] } keys %moving), 0, 'the moved accounts are placed on the destination');
	settle('shard move while syncing', @accs);
	# a round after the move for each moved account, and every one of them on the destination
	ol_create($_) for @accs;
	settle('the destination syncs the moved accounts', @accs);
	my $late = runs_by_node($moved_at);
	my $stale = grep { my $a = $_; $late->{$a} && grep { $_ != $groups[1] } keys %{ $late->{$a} } } @accs;
	my $settled_runs = q1($coord, "SELECT now()");
	ol_create($_) for @accs[ 0 .. 3 ];
	settle('moved accounts keep syncing', @accs[ 0 .. 3 ]);
	my $later = runs_by_node($settled_runs);
	is(scalar(grep { my $a = $_; !$later->{$a} || grep { $_ != $groups[1] } keys %{ $later->{$a} } } @accs[ 0 .. 3 ]), 0,
		'rounds of moved accounts after the move run on the destination only');
	note("rounds of moved accounts started on the source after the move began: $stale");
}

# ------------------------------------------------------------ isolation

{
	$place = placement();
	# two users with events, whose accounts are on different nodes now
	my @with_events = sort { $a <=> $b } keys %expect;
	my ($ua) = grep { $place->{$_} == $groups[0] } @with_events;
	my ($ub) = grep { $place->{$_} == $groups[1] } @with_events;
	my $b_event = (as_fa($coord, "fa-$ub", "SELECT min(event_id) FROM m365sync.events(now() - interval '30 days', now() + interval '400 days')"))[1];
	like($b_event, qr/^\d+$/, 'the other user has an event');
	for my $node (@nodes)
	{
		my $name = $node->name;
		my $own = local_subjects($ua, $node);
		ok($own && keys(%$own) && !grep({ !$expect{$ua}{$_} } keys %$own), "$name: events() shows the user's own events only");
		my ($ok, $out, $st) = as_fa($node, "fa-$ua", "SELECT subject FROM m365sync.event($b_event)");
		is($st, 'P0002', "$name: event() of another user's event: not found");
		($ok, $out, $st) = as_fa($node, "fa-$ua", "SELECT m365sync.upsert_event('{\"subject\":\"x\"}', $b_event)");
		ok(!$ok && $st ne '', "$name: upsert_event() of another user's event refused ($st)");
		($ok, $out, $st) = as_fa($node, "fa-$ua", "SELECT m365sync.delete_event($b_event)");
		ok(!$ok && $st ne '', "$name: delete_event() of another user's event refused ($st)");
		($ok, $out, $st) = as_fa($node, "fa-$ua", 'SELECT count(*) FROM m365sync.conflicts()');
		ok($ok, "$name: conflicts() answers");
		($ok, $out, $st) = as_fa($node, "fa-$ua", 'SELECT count(*) FROM m365sync.events');
		is($st, '42501', "$name: the events table is closed to the app");
		($ok, $out, $st) = as_fa($node, "fa-$ua", 'SELECT count(*) FROM m365sync.accounts');
		is($st, '42501', "$name: the accounts table is closed to the app");
	}
	is_deeply(local_subjects($ub), remote_subjects($ub), 'the other user\'s events are untouched');

	# The second wall: row level security on the shards, as the role the
	# user functions run as. The acting user reaches the shards by SET LOCAL
	# (distribute() set citus.propagate_set_commands); without it nothing.
	my $acc_of = sub { q1($coord, "SELECT account_id FROM m365sync.accounts WHERE flowagent_user = 'fa-$_[0]'") };
	for my $node (@nodes)
	{
		my $name = $node->name;
		is(q1($node, "BEGIN; SET LOCAL ROLE m365sync_definer; SET LOCAL m365sync.flowagent_user = 'fa-$ua';"
			  . " SELECT string_agg(DISTINCT account_id::text, ',') FROM m365sync.events; COMMIT;"),
			$acc_of->($ua), "$name: row level security on the shards: the acting user's events only");
		is(q1($node, "BEGIN; SET LOCAL ROLE m365sync_definer; SET LOCAL m365sync.flowagent_user = 'fa-$ua';"
			  . " SELECT count(*) FROM m365sync.accounts WHERE account_id = " . $acc_of->($ub) . "; COMMIT;"),
			'0', "$name: row level security on the shards: another user's account row is invisible");
		is(q1($node, "BEGIN; SET LOCAL ROLE m365sync_definer;"
			  . " SELECT count(*) FROM m365sync.events; COMMIT;"),
			'0', "$name: row level security on the shards: no acting user, no rows");
	}

	# events() on the coordinator routes the window query to the node of the
	# account's shards (m365sync._events_window, its rows packed in one
	# bytea: empty when there are none), by account_routes (no row level
	# security: ids only) and outside a remote transaction when it can, so
	# the acting user goes as an argument. Closed to the app there, and
	# bound by the shards' row level security for the user it names.
	my %node_of_group = map { (q1($_, 'SELECT groupid FROM pg_catalog.pg_dist_local_group') => $_) } @workers;
	my $b_node = $node_of_group{ $place->{$ub} };
	my $win_args = $acc_of->($ub) . ", now() - interval '30 days', now() + interval '400 days',"
	  . " current_date - 31, current_date + 401, NULL";
	my $window = sub {
		my ($set_user, $arg) = @_;
		my ($ret, $out, $err) = $b_node->psql('postgres', "BEGIN; SET LOCAL ROLE m365sync_definer;"
			  . (defined $set_user ? " SET LOCAL m365sync.flowagent_user = 'fa-$set_user';" : '')
			  . " SELECT octet_length(m365sync._events_window($win_args, $arg));"
			  . " SELECT coalesce(nullif(current_setting('m365sync.flowagent_user'), ''), '-'); COMMIT;",
			extra_params => [ '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose' ]);
		return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? "error $1" : $out;
	};
	my ($ok, $out, $st) = as_fa($b_node, "fa-$ub", "SELECT count(*) FROM m365sync._events_window($win_args, 'fa-$ub')");
	is($st, '42501', 'the routed window query is closed to the app');
	($ok, $out, $st) = as_fa($coord, "fa-$ub", 'SELECT count(*) FROM m365sync.account_routes');
	is($st, '42501', 'the routes table is closed to the app');
	like($window->(undef, "'fa-$ub'"), qr/^[1-9]\d*\n-$/,
		'the routed window query reads the events of the account of the user it names, without SET LOCAL');
	is($window->(undef, "'fa-$ua'"), "0\n-", 'the routed window query reads nothing of another user\'s account');
	is($window->($ub, "'fa-$ua'"), "0\nfa-$ub",
		'the user named wins over the one set (no widening), and the one set is back after the call');
	like($window->($ua, "'fa-$ub'"), qr/^[1-9]\d*\nfa-$ua$/,
		'the routed window query acts for the user named for its own run only');
	is($window->(undef, 'NULL'), 'error 22004', 'the routed window query refuses no user');
	is($window->(undef, "''"), 'error 28000', 'the routed window query refuses an empty user');

	# every account has its route, co-located with it (the routed statement
	# lands on the node of the account's shards)
	is(q1($coord, 'SELECT count(*) FROM m365sync.accounts a WHERE NOT EXISTS'
		  . ' (SELECT 1 FROM m365sync.account_routes r WHERE r.account_id = a.account_id)')
		  . '/' . q1($coord, 'SELECT count(*) FROM m365sync.account_routes r WHERE NOT EXISTS'
		  . ' (SELECT 1 FROM m365sync.accounts a WHERE r.account_id = a.account_id)'),
		'0/0', 'account_routes holds exactly the accounts');

	# events() answers the same on every node (the coordinator reaches the
	# shard's node remotely, that node itself by local execution, the other
	# worker remotely), and holds every live event of the account's rows
	my $all = "m365sync.events(now() - interval '30 days', now() + interval '400 days')";
	my @views = map { (as_fa($_, "fa-$ub", "SELECT json_agg(e ORDER BY e.event_id) FROM $all e"))[1] } @nodes;
	ok($views[0] =~ /"event_id"/ && !grep({ $_ ne $views[0] } @views), 'events() is identical on the coordinator and each worker node');
	is((as_fa($coord, "fa-$ub", "SELECT string_agg(event_id::text, ',' ORDER BY event_id) FROM $all"))[1],
		q1($coord, "SELECT string_agg(event_id::text, ',' ORDER BY event_id) FROM m365sync.events"
			  . " WHERE account_id = " . $acc_of->($ub) . " AND NOT deleted"),
		'events() on the coordinator lists every live event of the account');

	# Read your writes: a transaction that wrote to the account's node
	# through Citus reads in its remote transaction there (Citus keeps one
	# once the transaction is coordinated), so events() shows the write;
	# a read before the write takes no remote transaction, and the rollback
	# still undoes the write.
	my $fa_tx = sub {
		my ($sql) = @_;
		my ($ret, $o, $e) = $coord->psql('postgres', $sql, extra_params => [ '-U', 'flowagent', '-v', 'ON_ERROR_STOP=1' ]);
		return $ret == 0 ? $o : "failed: $e";
	};
	my $count_ryw = "SELECT count(*) FROM $all WHERE subject = 'ryw $marker'";
	my $total = "SELECT count(*) FROM $all";
	my $at = sub { "jsonb_build_object('dateTime', to_char(now() + interval '$_[0]', 'YYYY-MM-DD\"T\"HH24:00:00'), 'timeZone', 'UTC')" };
	my $upsert_ryw = "SELECT m365sync.upsert_event(jsonb_build_object('subject', 'ryw $marker', 'start', "
	  . $at->('2 days') . ", 'end', " . $at->('2 days 1 hour') . ")) IS NOT NULL";
	for my $iso ('READ COMMITTED', 'REPEATABLE READ')
	{
		my @r = split /\n/, $fa_tx->("BEGIN ISOLATION LEVEL $iso; SET LOCAL m365sync.flowagent_user = 'fa-$ub';"
			  . " $count_ryw; $total; $upsert_ryw; $count_ryw; $total; ROLLBACK;");
		is(scalar(@r) == 5 && $r[0] eq '0' && $r[1] > 0 && $r[2] eq 't' && $r[3] eq '1' && $r[4] == $r[1] + 1 ? 'ok' : "@r", 'ok',
			"$iso: events() on the coordinator reads the rest before the transaction's write, then the write too");
	}
	is((as_fa($coord, "fa-$ub", $count_ryw))[1], '0', 'the rolled-back write is not there afterwards');
}

# ------------------------------------------------------------ keys

like($t->as_admin('SELECT m365sync.rewrap_keys()'), qr/^[1-9]\d*$/, 'rewrap_keys() on the coordinator rewraps the data keys on every node');
fa_create($_) for @edited[ 0, 8 ];
ol_create($_) for @edited[ 1, 9 ];
settle('after rewrap_keys(), mailboxes on both nodes still read and sync', @edited[ 0 .. 3 ], @edited[ 8 .. 11 ]);

# ------------------------------------------------------------ plaintext

$_->safe_psql('postgres', 'CHECKPOINT') for @nodes;
for my $node (@nodes)
{
	my @hits;
	find({ no_chdir => 1, wanted => sub {
		return unless -f $_;
		open my $fh, '<:raw', $_ or return;
		local $/;
		my $data = <$fh>;
		close $fh;
		push @hits, $_ if index($data, $marker) >= 0 || $data =~ /mbx\d+\@contoso/;
	} }, $node->data_dir);
	is(scalar(@hits), 0, $node->name . ': no event content or mailbox address in clear in the data directory or WAL')
	  or diag(join "\n", @hits[ 0 .. ($#hits < 5 ? $#hits : 4) ]);
}

done_testing();
