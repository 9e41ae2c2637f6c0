"""The netlink writer: one component owning one rtnetlink socket, Trio-native.

All address and link changes on a node go through one ``NetlinkWriter``. It speaks
rtnetlink over a ``trio.socket`` (no pyroute2 ``IPRoute``, no threads: pyroute2's sync API
hops threads and forks per namespace, research/env.md section 3). Requests are pipelined:
a batch is written in one ``send`` and its ACKs (``NETLINK_CAP_ACK``: 36 bytes each) are
read back and matched by sequence number, so one round trip serves many addresses.

Ownership: every address it adds carries ``IFA_PROTO = settings.address_proto``. The
reconcile only deletes or replaces addresses with that mark, so an address an operator
added by hand is never touched, and a reconcile at start-up removes whatever a previous
run of the agent left behind.

Kernels before 6.3 ignore IFA_PROTO. There (or with ``Ownership.STATE_FILE``) the writer
sends proto 0 and keeps a :class:`~purelb.agent.ledger.Ledger` of what it added instead;
dumped addresses found in the ledger are reported with ``proto = settings.address_proto``,
so the diff and interface discovery work unchanged.

Cancellation: a request whose ACK was not read when the caller was cancelled may or may
not have been applied. Nothing is cached between calls, so the next ``reconcile`` (which
starts with a dump) heals it; stray ACKs of old sequence numbers are skipped.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import final

import trio

from . import codec
from .diff import AddrDiff, diff_addresses
from .errors import AddressOpError, LinkOpError, NetlinkProtocolError, UnsupportedKernelError
from .ledger import Ledger, ledger_path
from .netns import open_socket
from .records import IFF_UP, AddressInfo, AddrSpec, IPInterface, LinkInfo, RouteInfo
from .settings import DEFAULT_AGENT_SETTINGS, AgentSettings, Ownership, VirtualKind

LOGGER = logging.getLogger(__name__)

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
SO_RCVBUFFORCE = 33

#: Receive buffer per recv: the kernel builds dump datagrams of at most 32 KiB
#: (netlink_dump caps its allocation there), ACKs are 36 bytes.
RECV_BUFFER_BYTES = 64 * 1024

#: A dump interrupted by concurrent changes (NLM_F_DUMP_INTR) is retried this often.
DUMP_ATTEMPTS = 5

#: A reconcile that lost ACKs (ENOBUFS) re-dumps and retries this often.
RECONCILE_ATTEMPTS = 3

#: IFA_PROTO on addresses exists since Linux 6.3 (commit 47f0bd503210).
IFA_PROTO_MIN_KERNEL = (6, 3)

_SEQ_MASK = 0xFFFFFFFF
_SEQ = struct.Struct("=I")
_SEQ_OFFSET = 8  # nlmsghdr: len(4) type(2) flags(2) seq(4) pid(4)


def kernel_supports_ifa_proto(release: str) -> bool:
    """True when a kernel release string (``uname -r``) is at least 6.3."""
    parts: list[int] = []
    for piece in release.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts) >= IFA_PROTO_MIN_KERNEL


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one reconcile did."""

    diff: AddrDiff
    """The planned changes (deletes, adds, foreign addresses left alone)."""
    errors: tuple[AddressOpError, ...]
    """Changes the kernel refused; the others were applied."""

    @property
    def ok(self) -> bool:
        return not self.errors


@final
class NetlinkWriter:
    """Owns one rtnetlink socket in one network namespace.

    Use ``async with await NetlinkWriter.open(netns, settings) as nl:``. Calls from several
    tasks are serialized on an internal lock: there is one socket and one owner.
    """

    def __init__(
        self,
        sock: trio.socket.SocketType,
        *,
        settings: AgentSettings,
        netns: str | None,
        ledger: Ledger | None = None,
    ) -> None:
        self._sock = sock
        self._ledger = ledger
        self._wire_proto = 0 if ledger is not None else settings.address_proto
        self._settings = settings
        self._netns = netns
        self._seq = 0
        self._lock = trio.StrictFIFOLock()
        self._buf = bytearray(RECV_BUFFER_BYTES)
        self._names: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"<NetlinkWriter netns={self._netns!r} proto={self.proto:#x}>"

    @classmethod
    async def open(
        cls, netns: str | None = None, settings: AgentSettings = DEFAULT_AGENT_SETTINGS
    ) -> NetlinkWriter:
        """Open the socket inside ``netns`` (a name under /run/netns or a path; None = own).

        Raises:
            UnsupportedKernelError: the kernel cannot mark addresses (IFA_PROTO, >= 6.3).
            NetnsError: the namespace does not exist or cannot be entered.
        """
        release = os.uname().release
        supported = kernel_supports_ifa_proto(release)
        mode = settings.ownership
        if mode is Ownership.IFA_PROTO and not supported:
            raise UnsupportedKernelError(
                f"kernel {release} cannot mark addresses with IFA_PROTO (needs Linux >= 6.3); "
                "use ownership 'state-file' (or 'auto')"
            )
        ledger = None
        if mode is Ownership.STATE_FILE or (mode is Ownership.AUTO and not supported):
            path = ledger_path(settings.state_dir, netns)
            ledger = await trio.to_thread.run_sync(Ledger.load, path)
            LOGGER.info("event=ownership mode=state-file path=%s kernel=%s owned=%d",
                        path, release, len(ledger))
        sock = await open_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, settings.netlink_rcvbuf_bytes)
            except PermissionError:  # no CAP_NET_ADMIN: capped by net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.netlink_rcvbuf_bytes)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            await sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return cls(sock, settings=settings, netns=netns, ledger=ledger)

    @property
    def proto(self) -> int:
        """The IFA_PROTO value that marks this agent's addresses in dumps."""
        return self._settings.address_proto

    @property
    def ledger(self) -> Ledger | None:
        """The ownership state file in use (None: IFA_PROTO marks ownership)."""
        return self._ledger

    async def aclose(self) -> None:
        self._sock.close()

    async def __aenter__(self) -> NetlinkWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- socket plumbing ----------------------------------------------------------------

    def _next_seqs(self, n: int) -> int:
        first = (self._seq + 1) & _SEQ_MASK
        self._seq = (self._seq + n) & _SEQ_MASK
        return first

    async def _send(self, data: bytes | bytearray) -> None:
        try:
            await self._sock.send(data)
        except OSError as exc:
            raise NetlinkProtocolError(
                f"netlink send of {len(data)} bytes failed: "
                f"{errno.errorcode.get(exc.errno or 0, exc.errno)} ({exc.strerror})"
            ) from exc

    async def _recv(self) -> memoryview:
        try:
            n = await self._sock.recv_into(self._buf)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise NetlinkProtocolError(
                    "netlink receive buffer overflowed (ENOBUFS): replies were lost; "
                    "re-dump and retry"
                ) from exc
            raise NetlinkProtocolError(
                f"netlink receive failed: {errno.errorcode.get(exc.errno or 0, exc.errno)} "
                f"({exc.strerror})"
            ) from exc
        return memoryview(self._buf)[:n]

    async def _transact(self, requests: Sequence[bytes]) -> list[int]:
        """Send requests (each asks for an ACK), return the errno of each (0 = done)."""
        results = [0] * len(requests)
        batch = self._settings.netlink_batch
        hdr = codec.NLMSG_HDR
        async with self._lock:
            for start in range(0, len(requests), batch):
                chunk = requests[start : start + batch]
                first = self._next_seqs(len(chunk))
                out = bytearray()
                for i, req in enumerate(chunk):
                    offset = len(out)
                    out += req
                    _SEQ.pack_into(out, offset + _SEQ_OFFSET, (first + i) & _SEQ_MASK)
                await self._send(out)
                pending = len(chunk)
                while pending:
                    view = await self._recv()
                    offset = 0
                    while offset + hdr.size <= len(view):
                        length, mtype, _flags, seq, _pid = hdr.unpack_from(view, offset)
                        if length < hdr.size:
                            raise NetlinkProtocolError(f"netlink reply of length {length}")
                        if mtype == codec.NLMSG_ERROR:
                            i = (seq - first) & _SEQ_MASK
                            if i < len(chunk):
                                code = codec.ERRNO.unpack_from(view, offset + hdr.size)[0]
                                results[start + i] = -code
                                pending -= 1
                        offset += (length + 3) & ~3
        return results

    async def _dump(self, msg_type: int, family: int = 0) -> list[codec.RawMessage]:
        async with self._lock:
            for _attempt in range(DUMP_ATTEMPTS):
                seq = self._next_seqs(1)
                await self._send(codec.encode_dump_request(msg_type, seq=seq, family=family))
                out: list[codec.RawMessage] = []
                interrupted = False
                done = False
                while not done:
                    view = await self._recv()
                    try:
                        messages = list(codec.split_messages(view))
                    except ValueError as exc:
                        raise NetlinkProtocolError(str(exc)) from exc
                    for msg in messages:
                        if msg.seq != seq:
                            continue  # an ACK of a request whose caller was cancelled
                        if msg.flags & codec.NLM_F_DUMP_INTR:
                            interrupted = True
                        if msg.type == codec.NLMSG_DONE:
                            done = True
                            break
                        if msg.type == codec.NLMSG_ERROR:
                            code = msg.error_code()
                            raise NetlinkProtocolError(
                                f"dump of message type {msg_type} refused: "
                                f"{errno.errorcode.get(code, code)}"
                            )
                        out.append(msg)
                if not interrupted:
                    return out
                LOGGER.debug("netlink dump type=%d interrupted by a change; retrying", msg_type)
        raise NetlinkProtocolError(
            f"dump of message type {msg_type} was interrupted {DUMP_ATTEMPTS} times in a row"
        )

    # -- dumps ----------------------------------------------------------------------------

    async def dump_links(self) -> tuple[LinkInfo, ...]:
        """Every interface in the namespace, sorted by index."""
        msgs = await self._dump(codec.RTM_GETLINK)
        try:
            decoded = [codec.decode_link(m.data) for m in msgs if m.type == codec.RTM_NEWLINK]
        except Exception as exc:  # pyroute2's decoder raises assorted types on bad input
            raise NetlinkProtocolError(f"malformed link dump: {exc!r}") from exc
        links = tuple(sorted(decoded, key=lambda link: link.index))
        self._names = {link.index: link.name for link in links}
        return links

    async def dump_addresses(self, family: int = 0) -> tuple[AddressInfo, ...]:
        """Every address (``family`` 0 = both; socket.AF_INET or AF_INET6 for one)."""
        msgs = await self._dump(codec.RTM_GETADDR, family)
        try:
            infos = tuple(codec.decode_addr(m.data) for m in msgs if m.type == codec.RTM_NEWADDR)
        except ValueError as exc:
            raise NetlinkProtocolError(f"malformed address dump: {exc}") from exc
        ledger = self._ledger
        if ledger is None:
            return infos
        if family == 0:
            ledger.retain(_ledger_key(i.index, i.interface) for i in infos)
        return tuple(
            dataclasses.replace(i, proto=self.proto)
            if _ledger_key(i.index, i.interface) in ledger
            else i
            for i in infos
        )

    async def dump_routes(self, family: int) -> tuple[RouteInfo, ...]:
        """Unicast routes of the main table for one family (socket.AF_INET / AF_INET6)."""
        msgs = await self._dump(codec.RTM_GETROUTE, family)
        try:
            routes = [codec.decode_route(m.data) for m in msgs if m.type == codec.RTM_NEWROUTE]
        except Exception as exc:  # pyroute2's decoder raises assorted types on bad input
            raise NetlinkProtocolError(f"malformed route dump: {exc!r}") from exc
        return tuple(r for r in routes if r is not None)

    # -- addresses ------------------------------------------------------------------------

    def _addr_error(self, op: str, index: int, address: object, code: int) -> AddressOpError:
        return AddressOpError(
            op, str(address), ifindex=index, ifname=self._names.get(index), errno=code
        )

    async def add_address(self, spec: AddrSpec, *, replace: bool = True) -> None:
        """Add (or with ``replace``, add-or-update) one address, marked as ours.

        ``replace`` also adopts an existing unmarked address (the kernel rewrites its
        proto); ``reconcile`` never does that to a foreign address.
        """
        req = codec.encode_addr_request(spec, seq=0, proto=self._wire_proto, replace=replace)
        if self._ledger is not None:
            self._ledger.claim([_ledger_key(spec.index, spec.interface)])
        (code,) = await self._transact([req])
        if code:
            raise self._addr_error(
                "replace" if replace else "add", spec.index, spec.interface, code
            )

    async def delete_address(self, info: AddressInfo) -> None:
        """Delete one address this agent owns (as reported by a dump).

        Raises:
            ValueError: the address is not marked as ours; the agent never deletes others.
            AddressOpError: the kernel refused (a missing address is not an error).
        """
        if info.proto != self.proto:
            raise ValueError(
                f"refusing to delete {info.interface} on index {info.index}: its proto "
                f"{info.proto} is not ours ({self.proto}); it was configured by someone else"
            )
        spec = AddrSpec(index=info.index, interface=info.interface)
        req = codec.encode_addr_request(spec, seq=0, proto=self._wire_proto, delete=True)
        (code,) = await self._transact([req])
        if code and code != errno.EADDRNOTAVAIL:
            raise self._addr_error("delete", info.index, info.interface, code)
        if self._ledger is not None:
            self._ledger.forget([_ledger_key(info.index, info.interface)])

    async def apply(self, diff: AddrDiff) -> tuple[AddressOpError, ...]:
        """Apply a diff (deletes first, then adds as replace), pipelined.

        Returns the refused operations; every other one was applied. An address that
        vanished before its delete counts as deleted.
        """
        proto = self._wire_proto
        enc = codec.encode_addr_request
        if self._ledger is not None:
            self._ledger.claim(_ledger_key(s.index, s.interface) for s in diff.add)
        reqs = [
            enc(AddrSpec(index=a.index, interface=a.interface), seq=0, proto=proto, delete=True)
            for a in diff.delete
        ]
        reqs += [enc(s, seq=0, proto=proto) for s in diff.add]
        codes = await self._transact(reqs)
        if self._ledger is not None:
            ndel = len(diff.delete)
            self._ledger.forget(
                _ledger_key(a.index, a.interface)
                for a, code in zip(diff.delete, codes[:ndel], strict=True)
                if code in (0, errno.EADDRNOTAVAIL)
            )
        if not any(codes):
            return ()
        if not self._names:
            await self.dump_links()
        errors: list[AddressOpError] = []
        ndel = len(diff.delete)
        for i, code in enumerate(codes):
            if not code:
                continue
            if i < ndel:
                if code == errno.EADDRNOTAVAIL:
                    continue
                a = diff.delete[i]
                errors.append(self._addr_error("delete", a.index, a.interface, code))
            else:
                s = diff.add[i - ndel]
                errors.append(self._addr_error("replace", s.index, s.interface, code))
        return tuple(errors)

    async def reconcile(self, wanted: Iterable[AddrSpec]) -> ReconcileResult:
        """Make this agent's addresses exactly ``wanted``: dump, diff, apply.

        Idempotent: a second call with the same input sends nothing (until a finite
        lifetime needs its refresh). Addresses not marked as ours are never changed;
        ours that are not wanted (including leftovers of an earlier run) are deleted.

        Raises:
            ValueError: ``wanted`` names one address twice on one interface.
            NetlinkProtocolError: replies were lost ``RECONCILE_ATTEMPTS`` times in a row.
        """
        specs = tuple(wanted)
        for attempt in range(1, RECONCILE_ATTEMPTS + 1):
            present = await self.dump_addresses()
            diff = diff_addresses(specs, present, proto=self.proto)
            try:
                errors = await self.apply(diff)
            except NetlinkProtocolError:
                if attempt == RECONCILE_ATTEMPTS:
                    raise
                LOGGER.warning(
                    "netlink replies lost during reconcile; re-dumping (attempt %d)", attempt
                )
                continue
            for err in errors:
                LOGGER.warning("event=address_refused %s", err)
            return ReconcileResult(diff=diff, errors=errors)
        raise AssertionError("unreachable: the loop returns or raises")

    async def remove_owned(self) -> ReconcileResult:
        """Delete every address marked as ours (start-up sweep, or shutdown withdrawal)."""
        return await self.reconcile(())

    # -- links ----------------------------------------------------------------------------

    async def _link_request(self, req: bytes) -> int:
        (code,) = await self._transact([req])
        return code

    async def set_link_up(self, index: int) -> None:
        req = codec.encode_link_request(
            codec.RTM_NEWLINK,
            seq=0,
            flags=codec.NLM_F_REQUEST | codec.NLM_F_ACK,
            index=index,
            ifi_flags=IFF_UP,
            ifi_change=IFF_UP,
        )
        code = await self._link_request(req)
        if code:
            raise LinkOpError("set up", self._names.get(index, f"index {index}"), errno=code)

    async def delete_link(self, index: int) -> None:
        """Delete an interface (the virtual one at shutdown); a missing one is fine."""
        req = codec.encode_link_request(
            codec.RTM_DELLINK, seq=0, flags=codec.NLM_F_REQUEST | codec.NLM_F_ACK, index=index
        )
        code = await self._link_request(req)
        if code and code != errno.ENODEV:
            raise LinkOpError("delete", self._names.get(index, f"index {index}"), errno=code)

    async def create_link(self, name: str, kind: str) -> None:
        """Create an interface of ``kind``; raises LinkOpError (EEXIST if it exists)."""
        req = codec.encode_link_request(
            codec.RTM_NEWLINK,
            seq=0,
            flags=codec.NLM_F_REQUEST | codec.NLM_F_ACK | codec.NLM_F_CREATE | codec.NLM_F_EXCL,
            ifname=name,
            kind=kind,
        )
        code = await self._link_request(req)
        if code:
            raise LinkOpError("create", name, errno=code, detail=f"kind {kind}")

    async def set_promote_secondaries(self, index: int) -> None:
        """Set ``net.ipv4.conf.IF.promote_secondaries=1`` on a link.

        Without it (the default is 0) deleting an interface's primary IPv4 address deletes
        every secondary address of the same subnet with it: withdrawing one virtual /24
        address would silently take the other Services' addresses down (checked here).
        """
        req = codec.encode_ipv4_devconf(
            index, seq=0, conf=codec.IPV4_DEVCONF_PROMOTE_SECONDARIES, value=1
        )
        code = await self._link_request(req)
        if code:
            raise LinkOpError(
                "set promote_secondaries on", self._names.get(index, f"index {index}"), errno=code
            )

    async def ensure_virtual_interface(self) -> LinkInfo:
        """Make sure the virtual interface exists and is up; return it.

        An existing interface of that name is accepted whatever its kind. Otherwise it is
        created as ``dummy``, falling back to ``ifb`` when the kernel has no dummy driver
        (EOPNOTSUPP), or as ``ifb`` directly; ``VirtualKind.EXISTING`` never creates.
        The interface must be up: routing software does not export addresses of a down
        link (research/netns-bird.md section 2). IPv4 secondaries are promoted, so removing
        one address never removes others of its subnet.
        """
        name = self._settings.virtual_interface
        kind = self._settings.virtual_kind
        link = _by_name(await self.dump_links(), name)
        if link is None:
            if kind is VirtualKind.EXISTING:
                raise LinkOpError(
                    "find",
                    name,
                    errno=errno.ENODEV,
                    detail="virtual_kind is 'existing' but no such interface; create it or "
                    "choose 'dummy'",
                )
            kinds = ["dummy", "ifb"] if kind is VirtualKind.DUMMY else ["ifb"]
            for i, k in enumerate(kinds):
                try:
                    await self.create_link(name, k)
                    break
                except LinkOpError as exc:
                    if exc.errno == errno.EEXIST:
                        break  # created concurrently: accept it
                    if exc.errno == errno.EOPNOTSUPP and i + 1 < len(kinds):
                        LOGGER.warning(
                            "kernel has no %r link type; creating %s as %r instead",
                            k,
                            name,
                            kinds[i + 1],
                        )
                        continue
                    raise
            link = _by_name(await self.dump_links(), name)
            if link is None:
                raise LinkOpError("find", name, errno=errno.ENODEV, detail="vanished after create")
        await self.set_promote_secondaries(link.index)
        if not link.is_up:
            await self.set_link_up(link.index)
            link = _by_name(await self.dump_links(), name)
            if link is None:
                raise LinkOpError("find", name, errno=errno.ENODEV, detail="vanished after up")
        return link


def _ledger_key(index: int, interface: IPInterface) -> tuple[int, str]:
    return (index, str(interface))


def _by_name(links: Iterable[LinkInfo], name: str) -> LinkInfo | None:
    return next((link for link in links if link.name == name), None)
