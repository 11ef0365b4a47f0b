// The Configuration payload in IKE_AUTH (RFC 7296 §2.19, §3.15), two engines
// in memory: IPv4 and IPv6 virtual IPs (INTERNAL_IP4_ADDRESS,
// INTERNAL_IP6_ADDRESS), DNS servers (INTERNAL_IP4_DNS, INTERNAL_IP6_DNS),
// the selectors that follow from them, failures; and IKE itself over IPv6
// outer addresses (NAT detection hashes of IPv6 addresses).
import { describe, expect, it } from 'vitest';
import { MemoryWire, child, establish, pskPair } from './support/peers.js';
import type { ConnectionPolicy } from '../control/ike/policy.js';
import { formatSelector } from '../control/ike/traffic-selectors.js';
import { decodeMessage } from '../control/wire/message.js';
import { CfgAttr, CfgType, ExchangeType, PayloadType } from '../control/wire/constants.js';
import { configRequest, respondConfig } from '../control/ike/config-payload.js';
import { connectionFromObject } from '../control/config/load.js';
import { connectionPolicy } from '../control/config/connection-policy.js';
import { ikeSaStatus } from '../control/status.js';

const dynamicInitiator = (over: Partial<ConnectionPolicy> = {}): Partial<ConnectionPolicy> => ({
  requestVirtualIp: true,
  children: [{ ...child('net', '10.1.0.0/24', '10.2.0.0/24'), localTs: ['dynamic'], remoteTs: [ts('0.0.0.0/0'), ts('::/0')] }],
  ...over,
});
const dynamicResponder = (over: Partial<ConnectionPolicy> = {}): Partial<ConnectionPolicy> => ({
  children: [{ ...child('net', '10.2.0.0/24', '10.1.0.0/24'), localTs: [ts('0.0.0.0/0'), ts('::/0')], remoteTs: ['dynamic'] }],
  ...over,
});

function ts(cidr: string) {
  return child('x', cidr, cidr).localTs[0]!;
}

/** Establish over IPv6 outer addresses (2001:db8::1 -> 2001:db8::2). */
async function establish6(over: Parameters<typeof pskPair>[0] = {}) {
  const wire = new MemoryWire();
  const { initiator, responder } = pskPair({
    initiator: { localAddrs: ['2001:db8::1'], remoteAddrs: ['2001:db8::2'], ...over.initiator },
    responder: { localAddrs: ['2001:db8::2'], ...over.responder },
  });
  const alice = wire.engine('2001:db8::1', [initiator]);
  const bob = wire.engine('2001:db8::2', [responder]);
  const up = alice.initiate(initiator.name, { local: { address: '2001:db8::1', port: 500 } });
  wire.run(100);
  const sa = await up;
  return { wire, alice, bob, sa, peerSa: bob.ikeSas()[0]! };
}

describe('Configuration payload: virtual IPs and DNS servers (RFC 7296 §3.15)', () => {
  it('vips [0.0.0.0, ::] leases one IPv4 and one IPv6 address with the DNS servers of both families; the Child SA selects both', async () => {
    const { wire, sa, peerSa } = await establish(
      {
        initiator: dynamicInitiator({ virtualIps: ['0.0.0.0', '::'] }),
        responder: dynamicResponder({ pools: ['10.99.0.0/24', 'fd00:99::/112'], dns: ['10.99.0.53', 'fd00:99::53'] }),
      },
    );
    expect(sa.state).toBe('established');
    expect(sa.virtualIps).toEqual(['10.99.0.1', 'fd00:99::1']);
    expect(sa.virtualIp).toBe('10.99.0.1');
    expect(sa.dns).toEqual(['10.99.0.53', 'fd00:99::53']);
    expect(peerSa.peerVirtualIps).toEqual(['10.99.0.1', 'fd00:99::1']);
    // The initiator offered any address of both families before it knew them, and the responder narrowed to the leases.
    expect(sa.children[0]!.localTs.map(formatSelector)).toEqual(['10.99.0.1/32', 'fd00:99::1/128']);
    expect(peerSa.children[0]!.remoteTs.map(formatSelector)).toEqual(['10.99.0.1/32', 'fd00:99::1/128']);
    // On the wire: the request asked with empty values, the reply carries a 17-octet INTERNAL_IP6_ADDRESS.
    const status = ikeSaStatus(sa, wire.clock.now());
    expect(status.virtualIps).toEqual(['10.99.0.1', 'fd00:99::1']);
    expect(status.dns).toEqual(['10.99.0.53', 'fd00:99::53']);
  });

  it('vips [::] asks for IPv6 only (and IPv6 DNS only): no IPv4 address is leased even though a pool has room', async () => {
    const { sa, peerSa } = await establish({
      initiator: dynamicInitiator({ virtualIps: ['::'] }),
      responder: dynamicResponder({ pools: ['10.99.0.0/24', 'fd00:99::/112'], dns: ['10.99.0.53', 'fd00:99::53'] }),
    });
    expect(sa.virtualIps).toEqual(['fd00:99::1']);
    expect(sa.dns).toEqual(['fd00:99::53']);
    expect(peerSa.peerVirtualIps).toEqual(['fd00:99::1']);
    expect(sa.children[0]!.localTs.map(formatSelector)).toEqual(['fd00:99::1/128']);
  });

  it('the request names what it asks for; a specific address asked for is honoured when free', () => {
    const { initiator, responder } = pskPair({ initiator: { requestVirtualIp: true, virtualIps: ['10.99.0.7', 'fd00:99::7'] }, responder: { pools: ['10.99.0.0/24', 'fd00:99::/112'] } });
    const req = configRequest(initiator)!;
    expect(req.cfgType).toBe(CfgType.CFG_REQUEST);
    expect(req.attributes.map((a) => [a.type, a.value.length])).toEqual([
      [CfgAttr.INTERNAL_IP4_ADDRESS, 4], [CfgAttr.INTERNAL_IP6_ADDRESS, 17], [CfgAttr.INTERNAL_IP4_DNS, 0], [CfgAttr.INTERNAL_IP6_DNS, 0],
    ]);
    expect(configRequest({ ...initiator, requestVirtualIp: false })).toBeUndefined();
    // Without a list, requestVirtualIp asks for one IPv4 address, as it always did.
    const plain = configRequest({ ...initiator, virtualIps: undefined })!;
    expect(plain.attributes.map((a) => a.type)).toEqual([CfgAttr.INTERNAL_IP4_ADDRESS, CfgAttr.INTERNAL_IP4_DNS]);
    return establish({ initiator: dynamicInitiator({ virtualIps: ['10.99.0.7', 'fd00:99::7'] }), responder: dynamicResponder({ pools: responder.pools }) }).then(({ sa }) => {
      expect(sa.virtualIps).toEqual(['10.99.0.7', 'fd00:99::7']);
    });
  });

  it('an IPv6 request to a connection with IPv4 pools only fails with INTERNAL_ADDRESS_FAILURE; the IKE SA stands without a Child SA', async () => {
    const failed: string[] = [];
    const wire = new MemoryWire();
    const { initiator, responder } = pskPair({ initiator: dynamicInitiator({ virtualIps: ['::'] }), responder: dynamicResponder({ pools: ['10.99.0.0/24'] }) });
    const alice = wire.engine('10.0.0.1', [initiator]);
    wire.engine('10.0.0.2', [responder]);
    alice.on('child-failed', (_sa, _name, reason) => failed.push(reason));
    const up = alice.initiate(initiator.name);
    wire.run(100);
    const sa = await up;
    expect(sa.state).toBe('established');
    expect(sa.virtualIps).toEqual([]);
    expect(sa.children).toHaveLength(0);
    expect(failed).toEqual(['INTERNAL_ADDRESS_FAILURE']);
  });

  it('a responder without pools answers a request for DNS servers only and fails nobody; malformed attributes are ignored', () => {
    const { responder } = pskPair({ responder: { dns: ['10.99.0.53', 'fd00:99::53'] } });
    const leased: number[] = [];
    const engine = { leaseVirtualIp: (_sa: unknown, family: 4 | 6) => { leased.push(family); return undefined; } } as never;
    const sa = { peerVirtualIps: [] as string[] } as never;
    const r = respondConfig(engine, sa, responder, {
      type: PayloadType.CP, cfgType: CfgType.CFG_REQUEST,
      attributes: [{ type: CfgAttr.INTERNAL_IP6_DNS, value: new Uint8Array(0) }, { type: CfgAttr.INTERNAL_IP6_ADDRESS, value: new Uint8Array(3) }],
    });
    expect(r.failed).toBe(false);
    expect(leased).toEqual([]);
    expect(r.reply!.attributes).toEqual([{ type: CfgAttr.INTERNAL_IP6_DNS, value: new Uint8Array([0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53]) }]);
    // A connection with pools refuses a peer that asks for no address (RFC 7296 §3.10.1 FAILED_CP_REQUIRED is the caller's).
    expect(respondConfig(engine, sa, { ...responder, pools: ['10.99.0.0/24'] }, undefined).failed).toBe(true);
  });

  it('configuration: vips [0.0.0.0, "::"], IPv6 pools (prefix and range) and dns reach the engine policy', () => {
    const conn = connectionFromObject({
      remote_addrs: ['2001:db8::2'], psk: 'a pre-shared key of decent length', vips: ['0.0.0.0', '::'],
      pools: ['fd00:99::/112', 'fd00:98::10-fd00:98::20', '10.99.0.0/24'], dns: ['10.99.0.53', 'fd00:99::53'],
    }, { name: 'c' });
    expect(conn.vips).toEqual(['0.0.0.0', '::']);
    expect(conn.dns).toEqual(['10.99.0.53', 'fd00:99::53']);
    const policy = connectionPolicy(conn, '2001:db8::1');
    expect(policy.requestVirtualIp).toBe(true);
    expect(policy.virtualIps).toEqual(['0.0.0.0', '::']);
    expect(policy.pools).toEqual(['fd00:99::/112', 'fd00:98::10-fd00:98::20', '10.99.0.0/24']);
    expect(policy.dns).toEqual(['10.99.0.53', 'fd00:99::53']);
    expect(() => connectionFromObject({ psk: 'a pre-shared key of decent length', dns: ['ns.example.org'] }, { name: 'c' })).toThrow(/dns\[0\].*not an IP address/);
  });
});

describe('IKE over IPv6 outer addresses, in memory', () => {
  it('IKE_SA_INIT and IKE_AUTH between 2001:db8::1 and 2001:db8::2: no NAT detected (hashes of the IPv6 addresses match), a Child SA with IPv6 selectors', async () => {
    const { wire, sa, peerSa } = await establish6({
      initiator: { children: [child('net', 'fd00:1::/64', 'fd00:2::/64')] },
      responder: { children: [child('net', 'fd00:2::/64', 'fd00:1::/64')] },
    });
    expect(sa.state).toBe('established');
    expect(peerSa.state).toBe('established');
    expect(sa.local.address).toBe('2001:db8::1');
    expect(peerSa.remote.address).toBe('2001:db8::1');
    expect([sa.natLocal, sa.natRemote, peerSa.natLocal, peerSa.natRemote]).toEqual([false, false, false, false]);
    expect(sa.children[0]!.localTs.map(formatSelector)).toEqual(['fd00:1::/64']);
    expect(sa.children[0]!.udpEncap).toBe(false);
    // Every message went between the IPv6 addresses.
    expect(new Set(wire.log.map((d) => `${d.local.address}>${d.remote.address}`))).toEqual(new Set(['2001:db8::1>2001:db8::2', '2001:db8::2>2001:db8::1']));
    const init = decodeMessage(wire.log[0]!.bytes);
    expect(init.ok && init.value.header.exchangeType).toBe(ExchangeType.IKE_SA_INIT);
  });

  it('a responder whose local_addrs is the unspecified IPv6 address (::) takes IKE_SA_INIT on any address', async () => {
    const { sa, peerSa } = await establish6({ responder: { localAddrs: ['::'] } });
    expect(sa.state).toBe('established');
    expect(peerSa.local.address).toBe('2001:db8::2');
  });

  it('a virtual IPv6 address leased over IPv6 outer addresses, with IPv4 inner traffic selected too', async () => {
    const { sa, peerSa } = await establish6({
      initiator: dynamicInitiator({ virtualIps: ['0.0.0.0', '::'] }),
      responder: dynamicResponder({ pools: ['fd00:99::/112', '10.99.0.0/24'] }),
    });
    expect(sa.virtualIps).toEqual(['10.99.0.1', 'fd00:99::1']);
    expect(peerSa.peerVirtualIps).toEqual(['10.99.0.1', 'fd00:99::1']);
    expect(sa.children[0]!.remoteTs.map(formatSelector)).toEqual(['0.0.0.0/0', '::/0']);
  });
});
