"""The TCP MIB: stack-wide counters under Linux ``nstat`` names (RFC 4022).

One :class:`TcpMib` per stack, shared by every connection of that stack (the
connection table hands it to each ``TcpConnection`` as ``conn.mib``).  Code
increments with ``mib["TcpRetransSegs"] += 1``; only names in :data:`NAMES`
exist, so a typo raises ``KeyError`` in tests instead of inventing a counter.
``Stack.counters()`` and ``ustack nstat`` read it.
"""

from __future__ import annotations

from typing import Final

NAMES: Final[tuple[str, ...]] = (
    # RFC 4022 tcp group, as nstat prints it
    "TcpActiveOpens", "TcpPassiveOpens", "TcpAttemptFails", "TcpEstabResets",
    "TcpCurrEstab", "TcpInSegs", "TcpOutSegs", "TcpRetransSegs", "TcpInErrs",
    "TcpOutRsts", "TcpInCsumErrors",
    # Linux TcpExt
    "TcpExtTCPLossProbes", "TcpExtTCPLossProbeRecovery", "TcpExtTCPSackRecovery",
    "TcpExtTCPRenoRecovery", "TcpExtTCPTimeouts", "TcpExtTCPFastRetrans",
    "TcpExtTCPSlowStartRetrans", "TcpExtTCPLostRetransmit", "TcpExtTCPSackRecoveryFail",
    "TcpExtTCPRenoRecoveryFail", "TcpExtTCPFullUndo", "TcpExtTCPPartialUndo",
    "TcpExtTCPDSACKUndo", "TcpExtTCPLossUndo", "TcpExtTCPSpuriousRTOs",
    "TcpExtTCPDSACKRecv", "TcpExtTCPDSACKOfoRecv", "TcpExtTCPDSACKOldSent",
    "TcpExtTCPSACKReorder", "TcpExtTCPRenoReorder", "TcpExtTCPTSReorder",
    "TcpExtTCPSackShifted", "TcpExtTCPSACKReneging",
    "TcpExtTCPAbortOnTimeout", "TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose",
    "TcpExtTCPAbortOnMemory", "TcpExtTCPAbortOnLinger", "TcpExtTCPAbortFailed",
    "TcpExtTCPMemoryPressures", "TcpExtTCPMemoryPressuresChrono",
    "TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed",
    "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
    "TcpExtTCPReqQFullDoCookies", "TcpExtTCPOrphanQueued", "TcpExtTCPToZeroWindowAdv",
    "TcpExtTCPFromZeroWindowAdv", "TcpExtTCPWantZeroWindowAdv", "TcpExtDelayedACKs",
    "TcpExtTCPPureAcks", "TcpExtTCPHPAcks", "TcpExtTCPHPHits", "TcpExtTCPOFOQueue",
    "TcpExtTCPOFODrop", "TcpExtTCPRcvQDrop", "TcpExtPAWSEstab", "TcpExtTCPChallengeACK",
    "TcpExtTW", "TcpExtTCPTimeWaitOverflow", "TcpExtTCPKeepAlive", "TcpExtTCPWinProbe",
    "TcpExtTCPDelivered", "TcpExtTCPAckCompressed", "TcpExtTCPOrigDataSent",
    "TcpExtTCPHystartTrainDetect", "TcpExtTCPHystartDelayDetect",
)


class TcpMib(dict[str, int]):
    """Counters by nstat name, all present from the start at 0."""

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(NAMES, 0))

    def __missing__(self, key: str) -> int:
        raise KeyError(f"{key!r} is not a TCP MIB counter (ustack.tcp.mib.NAMES)")

    def nonzero(self) -> dict[str, int]:
        return {name: value for name, value in self.items() if value}


__all__ = ["NAMES", "TcpMib"]
