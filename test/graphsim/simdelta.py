"""The delta engine: signed tokens, one page of calendarView/delta, and the
ground truth the tests compare against.  A mixin of simstore.Store."""

import base64
import bisect
import hashlib
import hmac

from simitems import (
    occ_id, parse_event_id, overlaps, version_at)


class DeltaEngine:
    # ------------------------------------------------------------ delta tokens
    def pack(self, fields):
        raw = ".".join(str(int(f)) for f in fields).encode()
        sig = hmac.new(self.secret, raw, hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(raw + b"~" + sig).decode().rstrip("=")

    def unpack(self, tok):
        try:
            b = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
            if len(b) < 11 or b[-10:-9] != b"~":
                return None
            raw, sig = b[:-10], b[-9:]
            if not hmac.compare_digest(hmac.new(self.secret, raw, hashlib.sha256).digest()[:9], sig):
                return None
            return [int(x) for x in raw.decode().split(".")]
        except Exception:
            return None

    # token fields: kind(0=delta,1=skip), mbx idx, epoch, cal idx, ws ms, we ms, S, U, cursor, sub, flags
    F_EMPTY = 1       # next page is a deliberately empty page
    F_REPLAY = 2      # this round replays the previous one (replay_across_rounds)

    def delta_page(self, m, cal_idx, ws, we, S, U, cursor, sub, flags, variant, pagesize):
        """One page.  Returns (list of item bytes, next token fields or None when done, delta fields)."""
        cfg = self.cfg
        items = []
        if flags & self.F_EMPTY:
            return items, (flags & ~self.F_EMPTY, S, U, cursor, sub)
        ls, le = m.log_seq, m.log_eid
        start, start_sub = cursor, sub
        pos = bisect.bisect_left(ls, cursor) if sub else bisect.bisect_right(ls, cursor)
        n = len(ls)
        scanned = 0
        overshoot = cfg.get("overshoot_pagesize")
        while pos < n and ls[pos] <= U and len(items) < pagesize:
            scanned += 1
            if scanned > 20000:
                break
            seq = ls[pos]
            head = m.items[le[pos]]
            v = version_at(head, U)
            if v is None or v.seq != seq:
                pos += 1
                continue
            known = version_at(head, S) if S else None
            lst = self.entry_items(m, known, v, cal_idx, ws, we, variant)
            if sub:
                lst = lst[sub:]
            room = pagesize - len(items)
            if len(lst) > room and not overshoot:
                items.extend(lst[:room])
                return self._dup(items), (flags, S, U, seq, sub + room)
            items.extend(lst)
            sub = 0
            cursor = seq
            pos += 1
        if self.cfg.get("duplicates_in_round") == "pages" and not (start == S and start_sub == 0):
            items = self._round_first_item(m, cal_idx, ws, we, S, U, variant) + items
        if pos < n and ls[pos] <= U:
            return self._dup(items), (flags, S, U, cursor, 0)
        return self._dup(items), None

    def _dup(self, items):
        if self.cfg.get("duplicates_in_round") is True and items:
            items.append(items[0])
        return items

    def _round_first_item(self, m, cal_idx, ws, we, S, U, variant):
        """The round's first item again ("pages": an event met on an earlier page)."""
        ls, le = m.log_seq, m.log_eid
        for pos in range(bisect.bisect_right(ls, S), len(ls)):
            if ls[pos] > U:
                break
            head = m.items[le[pos]]
            v = version_at(head, U)
            if v is None or v.seq != ls[pos]:
                continue
            lst = self.entry_items(m, version_at(head, S) if S else None, v, cal_idx, ws, we, variant)
            if lst:
                return lst[:1]
        return []

    def entry_items(self, m, known, cur, cal_idx, ws, we, variant):
        if known is None and not cur.deleted and cur.data.get("recurrence") is None:
            # the common case (first round, single event): no diff needed
            if cur.cal != cal_idx or not overlaps(cur.s, cur.e, ws, we):
                return []
            return [self.render(m, cur, variant)]
        stub = not self.cfg.get("full_occurrences")
        cur_map = self.instances(m, cur, cal_idx, ws, we, variant, stub)
        if known is None:
            return list(cur_map.values())
        known_map = self.instances(m, known, cal_idx, ws, we, variant, stub)
        out = [b for iid, b in cur_map.items() if known_map.get(iid) != b]
        out.extend(self.removed(iid) for iid in known_map
                   if iid not in cur_map and not self._cancelled_quietly(cur, iid))
        return out

    def _cancelled_quietly(self, cur, iid):
        """A cancelled occurrence of a live series: the live service sends no @removed for it
        (GRAPH.md section 11), unless removed_for_cancelled is set."""
        if self.cfg.get("removed_for_cancelled") or cur.deleted or not cur.exc:
            return False
        p = parse_event_id(iid)
        if p is None or p[2] is None:
            return False
        k = p[2]
        return k in cur.exc and cur.exc[k] is None

    # ------------------------------------------------------------ ground truth
    def truth(self, m, variant, cal_idx=None):
        out = []
        for v in m.items.values():
            if v.deleted or (cal_idx is not None and v.cal != cal_idx):
                continue
            d = self.render_dict(m, v, variant)
            d["calendar_id"] = m.cal_list[v.cal].id
            out.append(d)
            for k, x in sorted((v.exc or {}).items()):
                if x is None:
                    d.setdefault("cancelledOccurrences", []).append(occ_id(self.id_of(v, variant[0]), k))
                else:
                    dx = self.render_dict(m, v, variant, k)
                    dx["calendar_id"] = m.cal_list[v.cal].id
                    out.append(dx)
        return out

    def view(self, m, cal_idx, ws, we, variant):
        out = []
        for v in m.items.values():
            out.extend(self.instance_list(m, v, cal_idx, ws, we, variant))
        out.sort(key=lambda x: (x[0], x[1]))
        return [b for _, _, b in out]

