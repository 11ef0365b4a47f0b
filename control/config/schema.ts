/**
 * ikeclone's configuration: one YAML file, modelled on strongSwan's
 * swanctl.conf so that operators can carry their habits over (connection and
 * child names as map keys, snake_case option names, proposal keywords,
 * identities, durations). Validation is strict and precise: every problem is
 * reported with the file, the line, the path of the offending value
 * ("connections.site-a.children.net.esp[0]") and what was expected; unknown
 * keys are errors, not silently ignored. The result is a fully typed,
 * normalised GatewayConfig: durations in milliseconds, proposals parsed,
 * identities parsed, key files read, PSKs as bytes.
 *
 * Every field has a default unless marked REQUIRED. Durations accept "500ms",
 * "30s", "10m", "4h", "1d" or a number of seconds. Booleans accept
 * true/false and swanctl's yes/no. Lists accept a YAML list or, as in
 * swanctl.conf, one comma-separated string; ike, esp, local_ts, remote_ts
 * and listen.address must not be empty lists (omit them for their defaults).
 * `null` (an empty value) means "not set". YAML anchors and merge keys
 * (`<<: *common`) may share settings between connections; top-level keys
 * starting with "x-" are ignored, so that shared blocks have a place to live
 * (`x-common: &common {...}`). The file is at most 16 MiB and not empty
 * (`{}` is every default), nests at most 64 levels, expands at most 1000
 * aliases and uses no YAML tags beyond JSON's kinds (and !!binary for a psk):
 * control/config/yaml-limits.ts.
 *
 * ```yaml
 * log:
 *   level: info                # fatal | error | warn | info | debug | trace | silent
 * keylog: /var/lib/ikeclone/keys  # optional, off by default; an existing directory that receives
 *                              # Wireshark's ikev2_decryption_table and esp_sa files (this exports
 *                              # secrets: the gateway logs a warning while it is on). Relative paths
 *                              # are relative to the configuration file's directory.
 * listen:
 *   address: 0.0.0.0           # IKE socket address(es): an IP literal or a list of them
 *   port: 500                  # IKE port (RFC 7296 §2)
 *   natPort: 4500              # NAT-T port (RFC 7296 §2.23, RFC 3948)
 * limits:
 *   halfOpenCookieThreshold: 32  # half-open IKE SAs before COOKIE challenges (RFC 7296 §2.6);
 *                              # at most halfOpenMax
 *   halfOpenMax: 1024          # half-open IKE SAs in all; past this a new source takes the place of the
 *                              # oldest one of the source holding the most (that source's own are dropped)
 *   halfOpenPerSource: 5       # half-open IKE SAs per source address (strongSwan's block_threshold); past
 *                              # it the source must answer a COOKIE and then replaces its own oldest
 *   childSasPerPeer: 64        # Child SAs over all IKE SAs of one authenticated peer (RFC 7791 §8);
 *                              # replaced ones count until deleted: a rekey past it gets TEMPORARY_FAILURE
 *   ikeSasPerPeer: 16          # IKE SAs of one peer, clones included; NO_ADDITIONAL_SAS past this
 *                              # (a rekey past it, while old SAs wait for their Delete: TEMPORARY_FAILURE)
 * retransmit:                  # RFC 7296 §2.1
 *   timeout: 1s                # first retransmission after this
 *   base: 1.8                  # each further wait is the previous one times base (>= 1)
 *   tries: 5                   # retransmissions before giving up (0..100)
 *   maxTimeout: 30s            # cap on a single wait (>= timeout)
 * dataplane:
 *   workers: auto              # ESP worker threads: auto (= available cores) or an integer 1..1024
 *   tun: ikc0                  # optional (root): a TUN device for inner traffic, created at start;
 *                              # routes to the remote subnets via it are the operator's. Without
 *                              # it, ESP that arrives is verified and counted, then discarded
 *   tun_mtu: 1400              # the TUN device's MTU (576..9000)
 *   tun_queues: 1              # TUN queues (IFF_MULTI_QUEUE when more than 1), 1..64, when the
 *                              # I/O thread reads the device (tun_input: io-thread or its fallbacks)
 *   worker_loop: event-loop    # how an idle worker waits: event-loop (Atomics.waitAsync and libuv
 *                              # watches) | epoll (blocked in the kernel over its socket, its TUN
 *                              # queue and an eventfd: what wakes it is processed at once)
 *   tun_input: workers         # with output: workers, who reads the TUN device: workers (one queue
 *                              # per worker, each sealing what it reads with the member of the
 *                              # packet's family it owns; the I/O thread reads instead when a
 *                              # tunnel_mtu or outer_mtu is set, past 16 workers, or when the device
 *                              # cannot have that many queues) | io-thread (reads every queue)
 *   tun_offload: true          # TUN offloads like a NIC's (segmentation on read, coalescing on
 *                              # write; IFF_VNET_HDR) | false: one packet per read and per write
 *   output: workers            # with a TUN device, who sends ESP and writes decapsulated packets:
 *                              # workers (each its own, one thread hand-off per packet) | io-thread
 *   esp: auto                  # auto: raw ESP (IP protocol 50) when no NAT was detected and raw
 *                              # sockets are available (root), else UDP 4500 (RFC 3948) | udp: always UDP
 *   tunnel_mtu: auto           # largest inner packet an SA carries (576..9000), or auto: outer_mtu
 *                              # minus the SA's outer IP, UDP and ESP overhead (no limit without
 *                              # outer_mtu). A larger inner packet that may not be fragmented (IPv4
 *                              # with DF, IPv6) is dropped and answered into the TUN device with ICMP
 *                              # "fragmentation needed" / ICMPv6 "packet too big" (RFC 4301 §8.2,
 *                              # §8.3), as a router does
 *   outer_mtu: 1500            # optional: MTU of the outer path, for tunnel_mtu auto (576..65535)
 *   icmp_rate: 10              # too-big answers per second at most, in bursts of as many (1..10000)
 * cluster:                     # optional: join a load-sharing cluster on etcd (docs/cluster.md); absent:
 *                              # a single gateway, no etcd. Every node needs the same connections
 *   name: vpn1                 # REQUIRED: the cluster's name (keys live under /ikeclone/v1/<name>/)
 *   node: gw-a                 # REQUIRED: this node's name, unique in the cluster
 *   address: 192.0.2.11        # REQUIRED: this node's IP address; clones handed to it bind there
 *   etcd: [https://10.0.0.5:2379]  # REQUIRED: etcd client URLs
 *   tls:                       # optional: TLS to etcd (PEM files; https:// endpoints required)
 *     ca: etcd-ca.pem          # the CA that signed etcd's certificate
 *     cert: gw-a.pem           # our client certificate and its key (both or neither)
 *     key: gw-a.key
 *   sealing_key_file: cluster.secret  # REQUIRED: 32 to 4096 secret bytes, mode 0600 or stricter (a
 *                              # wider mode is refused); the cluster key that seals clones' IKE state
 *                              # in etcd is derived from it (HKDF), so it is the same on every node
 *   lease_ttl: 5s              # the node's etcd lease (2s..60s): a dead node's clones are taken over
 *                              # after it lapses, and a node cut off from etcd stops IKE on its clones
 *   on_etcd_unreachable: fail  # at start: fail (exit 1) | standalone (run as a single gateway)
 *   spi_prefix: 7              # optional, 1..255: this node's SPI prefix (io/spi-layout.ts); default:
 *                              # the first free one, claimed in etcd at join
 *   redirect:                  # optional: RFC 5685 placement of clients that cannot be cloned
 *     above: 100               # from this many established IKE SAs on this node, a new client that
 *                              # announced REDIRECT_SUPPORTED goes to the member with the fewest (when it
 *                              # has fewer); a client redirected here is never sent on
 *     at: init                 # init: in IKE_SA_INIT (before any state) | auth: in IKE_AUTH
 *   pool_reserve: 4            # 0..64: virtual IPs of each pool this node claims in etcd ahead of
 *                              # IKE_AUTH, so it answers at once; 0: each lease is taken from etcd in
 *                              # IKE_AUTH (one round trip more, no address parked on a node)
 *   suspect_silent: yes        # yes (default): heartbeat under the lease every lease_ttl/3; revoke the lease
 *                              # of a member silent in etcd for lease_ttl that does not answer a liveness
 *                              # probe (fast failover when it ran the etcd leader) | no: neither (never suspected)
 *   probe_port: 4501           # 1..65535: UDP port on address answering the probe (HMAC under the cluster key)
 *   admit_arrival_child: no    # yes: the Child SA this node creates for an arriving clone waits for an
 *                              # exact admission against limits.childSasPerPeer in etcd (one commit on
 *                              # the handoff's path) | no: created at once; a peer's own new Child SAs
 *                              # are admitted exactly either way
 *   steering: kernel           # kernel: each worker reads its own socket of the NAT-T port, the
 *                              # kernel steering ESP to it by the worker its SPI names (SO_REUSEPORT
 *                              # with BPF; native I/O, up to 64 workers), and raw IPv4 ESP on a raw
 *                              # socket of its own filtered to its SPIs | io-thread: one reader
 * metrics:                     # optional, off by default: Prometheus metrics over HTTP (GET /metrics)
 *   listen: 127.0.0.1:9710     # ADDRESS:PORT ([::1]:9710 for IPv6); an address other than loopback
 *                              # is served too, with a warning (the series tell traffic volumes)
 * connections:                 # default: none
 *   <name>:                    # letters, digits, '.', '_', '-'; starts with a letter or digit
 *     local_addrs: [192.0.2.1] # IP literals this connection uses; default: any (%any)
 *     remote_addrs: [198.51.100.7]  # peer addresses: IP literals or host names (resolved when
 *                              # initiating), or %any (the default) to accept any peer. REQUIRED,
 *                              # and not %any, when the connection or one of its children has
 *                              # start_action: start. The first one is the one to initiate to.
 *     remote_port: 500         # peer's IKE port when initiating
 *     ike: [aes256gcm16-prfsha256-x25519]   # IKE proposals in strongSwan's keywords (see
 *                              # control/config/proposal.ts), most preferred first; the entry
 *                              # "default" stands for DEFAULT_IKE_PROPOSALS, which is also the default
 *     local:
 *       id: gw.example.org     # our identity (control/ike/identity.ts forms: IP, FQDN,
 *                              # user@fqdn, @#keyid, DN). Default: the certificate's subject when certs
 *                              # or cert is set, else the single local_addrs address, else the address
 *                              # the IKE SA uses (EndpointConfig.id = 'any'). With a certificate, the
 *                              # peer checks that it names this ID (subjectAltName dNSName, rfc822Name,
 *                              # iPAddress, or the subject DN; RFC 4945 §3.1)
 *       auth: psk              # psk | pubkey | rsa/pss (pubkey, an RSA key signing with RSASSA-PSS;
 *                              # pubkey signs RSA with PKCS#1 v1.5, as strongSwan); default psk when
 *                              # the connection has a psk or psk_file, else pubkey
 *       key: gw.key.pem        # pubkey: REQUIRED private key (PEM: PKCS#8, SEC1 or PKCS#1; path
 *                              # relative to this file's directory, or the PEM text itself)
 *       certs: [gw.pem, intermediate.pem]  # optional: our certificate (the one for key, first) and
 *                              # the intermediate CAs above it, files (PEM, one or more
 *                              # certificates each, or DER), sent in CERT payloads (RFC 7296 §3.6)
 *                              # per send_cert; "the first certificate is not for local.key" is an error
 *       cert: gw.cert.pem      # instead of certs: one certificate, file or PEM text
 *     remote:
 *       id: client.example.org # the peer's identity or a pattern ("*.example.org",
 *                              # "*@example.org", "CN=*"); default %any (any identity)
 *       auth: psk              # psk | pubkey; same default as local.auth
 *       pubkey: client.pub.pem # pubkey: the peer's public key or certificate (PEM path or text),
 *                              # pinned; REQUIRED with pubkey unless cacerts is set
 *       cacerts: [root.pem]    # pubkey: trust anchors (files, as certs). The peer must send its
 *                              # certificate chain in CERT payloads; it is validated to one of these
 *                              # (signatures, validity at the gateway's clock, basicConstraints and
 *                              # path length, keyUsage/extendedKeyUsage, name constraints) and must
 *                              # name the peer's ID; we send CERTREQ with their key hashes (§3.7).
 *                              # A peer that sends no certificate is checked against pubkey, if set
 *       crls: [intermediate.crl]  # with cacerts: CRL files (PEM or DER) that revoke certificates;
 *                              # cRLDistributionPoints that are file: URIs are read too (never fetched)
 *       revocation: relaxed    # with cacerts: strict (every certificate's status must be known from
 *                              # a current CRL) | ifuri (fail when a distribution point is named but
 *                              # no CRL can be had) | relaxed (fail only when revoked)
 *     psk: "a long shared secret"  # REQUIRED when local.auth or remote.auth is psk, and only
 *                              # allowed then. Text (UTF-8), 0x<hex> or 0s<base64>; at least
 *                              # 16 octets: a PSK is the only secret behind AUTH, and short ones
 *                              # fall to offline guessing (RFC 7296 §2.15)
 *     psk_file: peer.psk       # instead of psk: a file holding it (one trailing newline ignored)
 *     send_cert: ifasked       # our CERT payloads: ifasked (after the peer sent a CERTREQ, as
 *                              # strongSwan) | always | never (the peer must have our certificate)
 *     send_certreq: yes        # send CERTREQ naming remote.cacerts (IKE_SA_INIT response, IKE_AUTH
 *                              # request)
 *     mobike: true             # announce MOBIKE (RFC 4555)
 *     encap: false             # force UDP encapsulation of ESP even without NAT (RFC 3948)
 *     fragmentation: yes       # IKE fragmentation (RFC 7383), as swanctl: yes (announce it in IKE_SA_INIT;
 *                              # our encrypted messages above fragment_size go out as Encrypted Fragment
 *                              # payloads when the peer announced it too) | accept (announce it and
 *                              # receive fragments, never send them) | force (send fragments even if the
 *                              # peer did not announce it) | no (neither announce nor accept them)
 *     fragment_size: 1280      # largest IP datagram (IP and UDP headers included) that carries one of
 *                              # our fragments, as strongSwan's charon.fragment_size (256..65535): IKE
 *                              # messages of at most 1252 octets over IPv4, 1232 over IPv6. A request
 *                              # unanswered after two retransmissions is cut again for 576 octets
 *                              # (IPv4) or 1280 (IPv6), and the IKE SA keeps that size (RFC 7383
 *                              # §2.5.2); a response uses no larger fragments than the request's
 *     clone:                   # RFC 7791 IKE SA cloning
 *       supported: true        # announce CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1); false: this
 *                              # connection's IKE SAs are never cloned, by either end
 *       per: none              # initiator side: none | worker (one IKE SA per data-plane worker) | nic (one per
 *                              # local address in nics, moved there with MOBIKE); gateway side in a
 *                              # cluster: node (clone the client's IKE SA once per other cluster node and
 *                              # hand clone k to node k, chosen by rendezvous hashing weighted by load;
 *                              # needs the cluster: section and a client that supports RFC 7791 and MOBIKE)
 *       count: 4               # number of IKE SAs including the original; default: workers for
 *                              # per: worker, nics' length for per: nic (round robin if larger)
 *       nics: [10.0.1.2, 10.0.2.2]   # per: nic only, REQUIRED there: local addresses, one per NIC
 *     redirect:                # RFC 5685 gateway redirection
 *       follow: true           # initiator: announce REDIRECT_SUPPORTED and go where a gateway's
 *                              # REDIRECT says (same connection, identities and children; in
 *                              # IKE_SA_INIT only with our nonce in it, in IKE_AUTH only after the
 *                              # gateway's AUTH verified); false: announce nothing, never follow
 *       max: 5                 # initiator: redirects followed within period (1..100); one more fails
 *       period: 300s           # the set-up (loop protection, RFC 5685 §7)
 *       to: [192.0.2.9, gw2.example.org]  # responder: redirect peers that announced support to these
 *                              # gateways in turn (IP addresses or host names; never to the address
 *                              # the request came to); default none: serve every peer here
 *       at: init               # responder: init (IKE_SA_INIT, before any state or key exchange) |
 *                              # auth (IKE_AUTH, after verifying the peer's AUTH, no Child SA)
 *     vips: [request]          # initiator: virtual IPs to request with a CP payload (RFC 7296
 *                              # §2.19, §3.15): request (= 0.0.0.0), 0.0.0.0 (any IPv4 address:
 *                              # INTERNAL_IP4_ADDRESS), :: (any IPv6 address: INTERNAL_IP6_ADDRESS),
 *                              # or a specific address; [0.0.0.0, "::"] asks for one of each. DNS
 *                              # servers (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS) are asked for too;
 *                              # what the peer gives shows in `status` (virtualIps, dns)
 *     pools: [10.9.0.0/24, "fd00:9::/112"]  # responder: hand out virtual IPs from these (CIDR or
 *                              # a-b ranges, IPv4 or IPv6): one address per family the peer asks
 *                              # for, from the first pool of that family with room. A prefix
 *                              # never gives out its first address (nor IPv4's broadcast one)
 *     dns: [10.9.0.53, "fd00:9::53"]  # responder: DNS servers sent with the virtual IPs
 *                              # (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS, RFC 7296 §3.15.1)
 *     start_action: none       # none | start (initiate when the gateway starts)
 *     dpd_delay: 0s            # liveness check interval (RFC 7296 §2.4); 0 = off, else at least 1s
 *     dpd_action: clear        # when the peer is found dead: clear (delete its SAs) | restart
 *                              # (delete them and initiate the connection again)
 *     keepalive: 20s           # NAT keepalive interval while a NAT is in front of us (RFC 3948 §4);
 *                              # sent only when nothing else went out in that time; 0 = off,
 *                              # else at least 1s
 *     rekey_time: 4h           # IKE SA rekeying interval; 0 = never
 *     reauth_time: 0s          # reauthentication interval; 0 = never
 *     over_time: 10%           # hard lifetime past rekey/reauth: a duration or a percentage of the
 *                              # larger of rekey_time and reauth_time (default 10%)
 *     rand_time: <over_time>   # random jitter subtracted from rekey_time (< rekey_time)
 *     children:
 *       <child name>:          # same naming rule as connections
 *         local_ts: [10.1.0.0/24]   # traffic selectors: dynamic (our address or virtual IP; the
 *         remote_ts: [10.2.0.0/24]  # default), an address, CIDR, or a-b range, optionally with
 *                              # [protocol] or [protocol/port] or [protocol/port-port], e.g.
 *                              # 10.2.0.0/16[tcp/443], 0.0.0.0/0[udp/500-501], ::/0[icmpv6]
 *         esp: [aes128gcm16]   # ESP proposals, "default" = DEFAULT_ESP_PROPOSALS (the default);
 *                              # key exchange keywords request PFS (modpnone: PFS optional).
 *                              # Only suites the data plane runs: aes128gcm16/12/8, aes256gcm16/12/8,
 *                              # chacha20poly1305, or aes128/aes256 with sha256, sha384 or sha512
 *                              # (AES-CBC + HMAC-SHA2, e.g. aes256-sha256); esn/noesn with any.
 *                              # Others (aes192, aes192gcm16, sha1, aesxcbc) are refused.
 *         mode: tunnel         # only tunnel mode for now
 *         rekey_time: 1h       # Child SA rekeying interval; 0 = never
 *         life_time: <rekey_time + 10%>  # hard lifetime (> rekey_time)
 *         rand_time: <life_time - rekey_time>  # jitter subtracted from rekey_time
 *         rekey_bytes: 0       # rekey after this many bytes (numbers or 500k/100M/2G); 0 = off
 *         life_bytes: <rekey_bytes + 10%>   # hard byte limit; 0 = none
 *         rekey_packets: 0     # rekey after this many packets; 0 = off
 *         life_packets: <rekey_packets + 10%>  # hard packet limit; 0 = none
 *         start_action: none   # none | start (create this child when the gateway starts, which
 *                              # initiates the connection)
 *         replay_window: 1024  # anti-replay window in packets: a power of two from 64 to 4096
 *                              # (the data plane's range, wasm/layout.ts)
 *         per_cpu_sas: no      # RFC 9611 per-resource Child SAs, as strongSwan's per_cpu_sas: yes
 *                              # (initiator) after this child's first Child SA (the fallback SA, RFC 9611
 *                              # §3), one Child SA with SA_RESOURCE_INFO per data-plane worker, each on its
 *                              # worker; (responder) accept them for the same selectors, each pinned to a
 *                              # worker, TS_MAX_QUEUE past per_cpu_sas_max. Off by default (RFC 9611 §7).
 *                              # A connection with clone.per: worker uses them anyway with a peer that
 *                              # cannot clone but answers SA_RESOURCE_INFO, and parallel Child SAs with
 *                              # identical selectors (RFC 7296 §2.8), one per worker, with one that does
 *                              # neither; `ikeclone status` says which and why
 *         per_cpu_sas_max: <workers>  # per-resource Child SAs of this child per IKE SA: created as
 *                              # initiator, accepted as responder (1..MAX_WORKERS; default dataplane.workers)
 *         dscp: copy           # outer header DSCP (RFC 4301 §5.1.2.1): copy (from the inner packet) or
 *                              # a fixed DSCP 0..63 (e.g. 46 for EF)
 *         ecn: normal          # outer ECN: normal (RFC 6040 normal mode: copied to the outer header,
 *                              # outer CE marks the inner packet CE on decapsulation, or drops a Not-ECT
 *                              # one) | off (outer Not-ECT, outer ECN ignored)
 *         df: copy             # DF of an IPv4 outer header (RFC 4301 §8.1): copy (from an inner IPv4
 *                              # packet; set for inner IPv6) | set | clear. IPv6 outer: IPV6_DONTFRAG.
 *                              # IPv4 has no per-packet DF in Linux: a worker switches IP_MTU_DISCOVER on
 *                              # its own socket of the steered NAT-T port (dataplane.steering: kernel),
 *                              # and the I/O thread on its sockets with dataplane.output: io-thread;
 *                              # ESP a worker sends on a shared socket (raw ESP, no steering) keeps the
 *                              # kernel's default (DF set)
 * ```
 *
 * The library API passes objects instead of YAML: connectionFromObject and
 * configFromObject take the same keys and give the same errors (file
 * "<object>", no line numbers).
 */
import * as z from 'zod';
import { identityFromAddress, type Identity } from '../ike/identity.js';
import { IdType } from '../wire/constants.js';
import {
  DEFAULT_CHILD_REKEY, DEFAULT_IKE_PORT, DEFAULT_IKE_REKEY, DEFAULT_LIMITS, DEFAULT_NAT_PORT, DEFAULT_REPLAY_WINDOW, DEFAULT_RETRANSMIT,
  DEFAULT_TUN_MTU, MAX_CLONES, MAX_REPLAY_WINDOW, MAX_WORKERS, MIN_REPLAY_WINDOW, autoWorkers,
} from './defaults.js';
import { Problem, got, report, type IssueSink, type PathSeg } from './errors.js';
import {
  PORT, TS_EXPECTED, boolean, count, duration, durationOrPercent, identityOrAny, integer, interval, ipLiteral, leaf, listOf, localAddress,
  namedMap, oneOf, pool, proposals, remoteAddress, section, trafficSelector, vip, withDefault, type Ctx,
} from './fields.js';
import { PSK_EXPECTED, certificate, certificateFiles, crlFiles, keylogDir, privateKey, pskFile, pskValue, publicKeyOrCert, subjectDer } from './secrets.js';
import { keyMatchesCertificate, parseCertificate } from '../crypto/x509/index.js';
import { certificateSubjectDer } from '../crypto/der.js';
import { signingKeyFromPrivateKey } from '../crypto/auth.js';
import { redirectSchema } from './redirect-schema.js';
import { pathConfig, pathFields } from './path-schema.js';
import { outerHeaderConfig, outerHeaderFields } from './outer-header-schema.js';
import { MIN_FRAGMENT_SIZE } from '../ike/defaults.js';
import type { FragmentationMode } from '../ike/policy.js';
import type {
  AuthMethod, ChildConfig, CloneConfig, ConnectionConfig, DataplaneConfig, EndpointConfig, GatewayConfig, ListenConfig, LimitsConfig,
  LogLevel, MetricsConfig, PoolConfig, RetransmitConfig, TrafficSelectorConfig,
} from './types.js';
import { LOG_LEVELS } from './types.js';
import { clusterSection } from './cluster-section.js';

const METRICS_LISTEN_EXPECTED = 'ADDRESS:PORT with an IP literal and a port from 1 to 65535, e.g. 127.0.0.1:9710 or [::1]:9710';

/** metrics.listen: "127.0.0.1:9710" or "[::1]:9710". */
function metricsListen(v: unknown): MetricsConfig | Problem {
  if (typeof v !== 'string') return new Problem(got(v), METRICS_LISTEN_EXPECTED);
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(v);
  const ip = ipLiteral(m?.[1] ?? m?.[2] ?? '');
  const port = Number(m?.[3]);
  if (!m || !ip.ok || !Number.isInteger(port) || port < 1 || port > 65535) return new Problem(got(v), METRICS_LISTEN_EXPECTED);
  return { address: ip.value, port };
}

const WORKERS_EXPECTED = `auto or an integer from 1 to ${MAX_WORKERS}`;

/** dataplane.workers: auto (the available cores) or a count. */
export function workersValue(v: unknown): { workers: number; workersAuto: boolean } | Problem {
  if (v === undefined || v === 'auto') return { workers: autoWorkers(), workersAuto: true };
  const n = integer(1, MAX_WORKERS, WORKERS_EXPECTED)(v);
  return n instanceof Problem ? n : { workers: n, workersAuto: false };
}

const AUTH = oneOf(['psk', 'pubkey'] as const);

/** swanctl's fragmentation (RFC 7383): yes | accept | force | no; YAML true and false stand for yes and no. */
function fragmentation(v: unknown): FragmentationMode | Problem {
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return oneOf(['yes', 'accept', 'force', 'no'] as const)(v);
}

function localEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(false)),
    // swanctl's rsa/pss: public key authentication, RSA signatures with RSASSA-PSS (RFC 7427).
    auth: leaf(withDefault<AuthMethod | 'rsa/pss' | undefined>(undefined, oneOf(['psk', 'pubkey', 'rsa/pss'] as const))),
    key: leaf(privateKey(ctx)),
    cert: leaf(certificate(ctx)),
    certs: leaf(certificateFiles(ctx)),
  }, 'a mapping with id, auth, key, certs, cert');
}

function remoteEndpointSchema(ctx: Ctx) {
  return section({
    id: leaf(identityOrAny(true)),
    auth: leaf(withDefault<AuthMethod | undefined>(undefined, AUTH)),
    pubkey: leaf(publicKeyOrCert(ctx)),
    cacerts: leaf(certificateFiles(ctx)),
    crls: leaf(crlFiles(ctx)),
    revocation: leaf(withDefault<'strict' | 'ifuri' | 'relaxed' | undefined>(undefined, oneOf(['strict', 'ifuri', 'relaxed'] as const))),
  }, 'a mapping with id, auth, pubkey, cacerts, crls, revocation');
}

function cloneSchema() {
  return section({
    supported: leaf(withDefault(true, boolean)),
    per: leaf(withDefault('none', oneOf(['none', 'worker', 'nic', 'node'] as const))),
    count: leaf(withDefault<number | undefined>(undefined, integer(1, MAX_CLONES))),
    nics: leaf(withDefault<string[] | undefined>(undefined, listOf('local IP addresses, one per NIC', ipLiteral))),
  }, 'a mapping with supported, per, count, nics');
}

function childSchema() {
  // A Child SA needs a traffic selector on each side (RFC 7296 §3.13: a TS payload holds at least one).
  const ts = (field: string) => leaf(withDefault<Array<TrafficSelectorConfig | 'dynamic'>>(() => ['dynamic'],
    listOf(TS_EXPECTED, trafficSelector, `at least one traffic selector (omit ${field} for dynamic)`)));
  return section({
    local_ts: ts('local_ts'),
    remote_ts: ts('remote_ts'),
    esp: leaf(proposals('ESP', 'esp')),
    mode: leaf(withDefault('tunnel', oneOf(['tunnel'] as const))),
    rekey_time: leaf(withDefault(DEFAULT_CHILD_REKEY, duration)),
    life_time: leaf(withDefault<number | undefined>(undefined, duration)),
    rand_time: leaf(withDefault<number | undefined>(undefined, duration)),
    rekey_bytes: leaf(withDefault(0, count)),
    life_bytes: leaf(withDefault<number | undefined>(undefined, count)),
    rekey_packets: leaf(withDefault(0, count)),
    life_packets: leaf(withDefault<number | undefined>(undefined, count)),
    start_action: leaf(withDefault('none', oneOf(['none', 'start'] as const))),
    per_cpu_sas: leaf(withDefault(false, boolean)),
    per_cpu_sas_max: leaf(withDefault<number | undefined>(undefined, integer(1, MAX_WORKERS))),
    replay_window: leaf(withDefault(DEFAULT_REPLAY_WINDOW, (v) => {
      const expected = `a power of two from ${MIN_REPLAY_WINDOW} to ${MAX_REPLAY_WINDOW}`;
      const n = integer(MIN_REPLAY_WINDOW, MAX_REPLAY_WINDOW, expected)(v);
      return n instanceof Problem || (n & (n - 1)) === 0 ? n : new Problem(got(v), expected);
    })),
    ...outerHeaderFields(),
  }, 'a mapping of child options (local_ts, remote_ts, esp, ...)').transform((raw, zctx) => {
    const ctx = zctx as unknown as IssueSink;
    const plus10 = (n: number): number => n + Math.round(n / 10);
    const lifeTime = raw.life_time ?? plus10(raw.rekey_time);
    if (raw.rekey_time > 0 && lifeTime > 0 && lifeTime <= raw.rekey_time) {
      report(ctx, new Problem(`life_time (${lifeTime} ms) is not longer than rekey_time (${raw.rekey_time} ms)`, 'a life_time greater than rekey_time', ['life_time']), raw);
      return z.NEVER;
    }
    const randTime = raw.rand_time ?? Math.max(0, lifeTime - raw.rekey_time);
    if (raw.rekey_time > 0 && randTime >= raw.rekey_time) {
      report(ctx, new Problem(`rand_time (${randTime} ms) is not shorter than rekey_time (${raw.rekey_time} ms)`, 'a rand_time smaller than rekey_time', ['rand_time']), raw);
      return z.NEVER;
    }
    const lifeBytes = raw.life_bytes ?? plus10(raw.rekey_bytes);
    const lifePackets = raw.life_packets ?? plus10(raw.rekey_packets);
    for (const [field, rekey, life] of [['life_bytes', raw.rekey_bytes, lifeBytes], ['life_packets', raw.rekey_packets, lifePackets]] as const) {
      if (rekey > 0 && life > 0 && life <= rekey) {
        report(ctx, new Problem(`${field} (${life}) is not larger than ${field.replace('life', 'rekey')} (${rekey})`, `a ${field} greater than the rekey limit, or 0`, [field]), raw);
        return z.NEVER;
      }
    }
    const child: Omit<ChildConfig, 'name'> = {
      localTs: raw.local_ts,
      remoteTs: raw.remote_ts,
      esp: raw.esp,
      mode: raw.mode,
      rekeyTime: raw.rekey_time,
      lifeTime,
      randTime,
      rekeyBytes: raw.rekey_bytes,
      lifeBytes,
      rekeyPackets: raw.rekey_packets,
      lifePackets,
      startAction: raw.start_action,
      replayWindow: raw.replay_window,
      perCpuSas: raw.per_cpu_sas,
      ...outerHeaderConfig(raw),
    };
    if (raw.per_cpu_sas_max !== undefined) child.perCpuSasMax = raw.per_cpu_sas_max;
    return child;
  });
}

/** One connection (connections.<name>): its fields and the rules between them. */
export function connectionSchema(ctx: Ctx) {
  return section({
    local_addrs: leaf(withDefault<string[]>(() => [], listOf('local IP addresses or %any', localAddress))),
    remote_addrs: leaf(withDefault<string[]>(() => [], listOf('peer IP addresses, host names or %any', remoteAddress))),
    remote_port: leaf(withDefault(DEFAULT_IKE_PORT, PORT)),
    ike: leaf(proposals('IKE', 'ike')),
    local: localEndpointSchema(ctx),
    remote: remoteEndpointSchema(ctx),
    psk: leaf(pskValue),
    psk_file: leaf(pskFile(ctx)),
    send_cert: leaf(withDefault<'ifasked' | 'always' | 'never' | undefined>(undefined, oneOf(['ifasked', 'always', 'never'] as const))),
    send_certreq: leaf(withDefault<boolean | undefined>(undefined, boolean)),
    mobike: leaf(withDefault(true, boolean)),
    encap: leaf(withDefault(false, boolean)),
    fragmentation: leaf(withDefault<FragmentationMode | undefined>(undefined, fragmentation)),
    fragment_size: leaf(withDefault<number | undefined>(undefined, integer(MIN_FRAGMENT_SIZE, 65535))),
    clone: cloneSchema(),
    redirect: redirectSchema(),
    vips: leaf(withDefault<string[]>(() => [], listOf('request, 0.0.0.0, :: or a specific IP address', vip))),
    pools: leaf(withDefault<PoolConfig[]>(() => [], listOf('address pools: CIDR prefixes or a-b ranges', pool))),
    dns: leaf(withDefault<string[]>(() => [], listOf('DNS server IP addresses', ipLiteral))),
    start_action: leaf(withDefault('none', oneOf(['none', 'start'] as const))),
    dpd_delay: leaf(withDefault(0, interval('dpd_delay'))),
    dpd_action: leaf(withDefault<'clear' | 'restart' | undefined>(undefined, oneOf(['clear', 'restart'] as const))),
    keepalive: leaf(withDefault<number | undefined>(undefined, interval('keepalive'))),
    rekey_time: leaf(withDefault(DEFAULT_IKE_REKEY, duration)),
    reauth_time: leaf(withDefault(0, duration)),
    over_time: leaf(withDefault<{ ms: number } | { percent: number }>({ percent: 10 }, durationOrPercent)),
    rand_time: leaf(withDefault<number | undefined>(undefined, duration)),
    children: namedMap(childSchema(), 'a mapping of child names to child options'),
  }, 'a mapping of connection options (remote_addrs, ike, local, remote, children, ...)').transform((raw, zctx) => {
    const issues = zctx as unknown as IssueSink;
    const problems: Problem[] = [];
    const problem = (path: PathSeg[], what: string, expected: string): void => { problems.push(new Problem(what, expected, path)); };

    // %any: alone, it means "any address" (the empty list).
    const anyList = (list: string[], field: string): string[] => {
      if (!list.includes('%any')) return list;
      if (list.length > 1) problem([field], '%any together with addresses', 'either %any or a list of addresses');
      return [];
    };
    const localAddrs = anyList(raw.local_addrs, 'local_addrs');
    const remoteAddrs = anyList(raw.remote_addrs, 'remote_addrs');

    // PSK: psk or psk_file, required exactly when a side uses psk.
    if (raw.psk !== undefined && raw.psk_file !== undefined) problem(['psk_file'], 'both psk and psk_file are set', 'only one of psk and psk_file');
    const psk = raw.psk ?? raw.psk_file;
    const defaultAuth: AuthMethod = psk !== undefined ? 'psk' : 'pubkey';
    const rsaPss = raw.local.auth === 'rsa/pss';
    const localAuth: AuthMethod = raw.local.auth === 'rsa/pss' ? 'pubkey' : raw.local.auth ?? defaultAuth;
    const remoteAuth = raw.remote.auth ?? defaultAuth;
    const usesPsk = localAuth === 'psk' || remoteAuth === 'psk';
    if (usesPsk && psk === undefined) {
      problem(['psk'], `missing, but ${localAuth === 'psk' ? 'local' : 'remote'}.auth is psk`, `psk or psk_file (${PSK_EXPECTED})`);
    }
    if (!usesPsk && psk !== undefined) {
      problem([raw.psk !== undefined ? 'psk' : 'psk_file'], 'set, but neither local.auth nor remote.auth is psk', 'no psk, or auth: psk on a side');
    }

    // Keys: pubkey authentication needs our private key / the peer's public key.
    if (localAuth === 'pubkey' && raw.local.key === undefined) {
      problem(['local', 'key'], 'missing, but local.auth is pubkey', 'a PEM private key (file path or PEM text)');
    }
    if (localAuth === 'psk' && raw.local.key !== undefined) problem(['local', 'key'], 'set, but local.auth is psk', 'no key, or auth: pubkey');
    if (raw.local.cert !== undefined && raw.local.key !== undefined && !raw.local.cert.cert.checkPrivateKey(raw.local.key.key)) {
      problem(['local', 'cert'], 'the certificate is not for local.key', 'the certificate of the private key in local.key');
    }
    // Certificates (RFC 7296 §3.6): local.certs is our end entity first, then intermediates.
    if (raw.local.cert !== undefined && raw.local.certs !== undefined) problem(['local', 'certs'], 'both cert and certs are set', 'only one of cert and certs');
    if (localAuth === 'psk' && (raw.local.certs ?? raw.local.cert) !== undefined) {
      problem(['local', raw.local.certs !== undefined ? 'certs' : 'cert'], 'set, but local.auth is psk', 'no certificate, or auth: pubkey');
    }
    if (rsaPss && raw.local.key !== undefined && raw.local.key.key.asymmetricKeyType !== 'rsa') {
      problem(['local', 'auth'], `rsa/pss, but local.key is a ${raw.local.key.key.asymmetricKeyType ?? 'non-RSA'} key`, 'pubkey, or an RSA key in local.key');
    }
    const localEe = raw.local.certs?.[0];
    if (localEe !== undefined && raw.local.key !== undefined) {
      const signing = signingKeyFromPrivateKey(raw.local.key.key);
      if (!signing.ok) problem(['local', 'key'], signing.error, 'an Ed25519, ECDSA P-256/P-384 or RSA private key');
      else if (!keyMatchesCertificate(signing.value, localEe)) {
        problem(['local', 'certs'], `the first certificate ("${localEe.subjectText}") is not for local.key`, 'the certificate of the private key in local.key first, then intermediates');
      }
    }
    const remoteCerts = raw.remote.cacerts !== undefined || raw.remote.crls !== undefined || raw.remote.revocation !== undefined;
    if (remoteAuth === 'pubkey' && raw.remote.pubkey === undefined && raw.remote.cacerts === undefined) {
      problem(['remote', 'pubkey'], 'missing, but remote.auth is pubkey', "the peer's PEM public key or certificate (file path or PEM text), or remote.cacerts");
    }
    if (remoteAuth === 'psk' && raw.remote.pubkey !== undefined) problem(['remote', 'pubkey'], 'set, but remote.auth is psk', 'no pubkey, or auth: pubkey');
    if (remoteAuth === 'psk' && remoteCerts) {
      const key = raw.remote.cacerts !== undefined ? 'cacerts' : raw.remote.crls !== undefined ? 'crls' : 'revocation';
      problem(['remote', key], 'set, but remote.auth is psk', `no ${key}, or auth: pubkey`);
    }
    if (raw.remote.cacerts === undefined && (raw.remote.crls !== undefined || raw.remote.revocation !== undefined)) {
      problem(['remote', raw.remote.crls !== undefined ? 'crls' : 'revocation'], 'set, but remote.cacerts is not', 'remote.cacerts to validate certificates against');
    }

    // Our identity: as configured, else the certificate subject, else our single address.
    let localId: Identity | 'any' = raw.local.id ?? 'any';
    if (raw.local.id === undefined && (localEe !== undefined || raw.local.cert !== undefined)) {
      const subject = localEe !== undefined ? certificateSubjectDer(localEe.der) : subjectDer(raw.local.cert!.cert);
      localId = { idType: IdType.DER_ASN1_DN, data: subject ?? new Uint8Array(0) };
      if (localId.data.length === 0) localId = 'any';
    } else if (raw.local.id === undefined && localAddrs.length === 1) {
      localId = identityFromAddress(localAddrs[0]!) ?? 'any';
    }

    // Initiating needs somewhere to send IKE_SA_INIT.
    const startsChild = Object.entries(raw.children).find(([, c]) => c.startAction === 'start');
    if ((raw.start_action === 'start' || startsChild !== undefined) && remoteAddrs.length === 0) {
      const why = raw.start_action === 'start' ? 'start_action is start' : `children.${startsChild![0]}.start_action is start`;
      problem(['remote_addrs'], `${raw.remote_addrs.length === 0 ? 'missing' : '%any'}, but ${why}`, 'the address or host name of the peer to initiate to');
    }

    // Cloning (RFC 7791): count defaults to one IKE SA per worker / per NIC.
    const c = raw.clone;
    let clone: CloneConfig = { supported: c.supported, per: c.per, count: 1, nics: [] };
    if (c.per !== 'none' && !c.supported) problem(['clone', 'per'], `${c.per}, but clone.supported is false`, 'per: none when cloning is not supported');
    if (c.per === 'nic') {
      if (c.nics === undefined || c.nics.length === 0) problem(['clone', 'nics'], 'missing, but clone.per is nic', 'the local address of each NIC');
      else clone = { supported: c.supported, per: 'nic', count: c.count ?? c.nics.length, nics: c.nics };
    } else {
      if (c.nics !== undefined) problem(['clone', 'nics'], `set, but clone.per is ${c.per}`, 'nics only with per: nic');
      if (c.per === 'worker') clone = { supported: c.supported, per: 'worker', count: c.count ?? ctx.workers, nics: [] };
      // per: node: the family's size is the cluster's (count 1 keeps the per-worker/NIC orchestrator out of it).
      else if (c.per === 'node' && c.count === undefined) clone = { supported: c.supported, per: 'node', count: 1, nics: [] };
      else if (c.count !== undefined) problem(['clone', 'count'], `set, but clone.per is ${c.per}`, 'count only with per: worker or per: nic');
    }

    // IKE SA lifetimes (strongSwan: over_time defaults to 10% of the longer of rekey and reauth).
    const lifetime = Math.max(raw.rekey_time, raw.reauth_time);
    const overTime = 'ms' in raw.over_time ? raw.over_time.ms : Math.round((lifetime * raw.over_time.percent) / 100);
    const randTime = raw.rand_time ?? overTime;
    if (raw.rekey_time > 0 && randTime >= raw.rekey_time) {
      problem([raw.rand_time !== undefined ? 'rand_time' : 'over_time'], `rand_time (${randTime} ms) is not shorter than rekey_time (${raw.rekey_time} ms)`, 'a rand_time smaller than rekey_time');
    }

    if (problems.length > 0) {
      for (const p of problems) report(issues, p, raw);
      return z.NEVER;
    }

    const local: EndpointConfig = { id: localId, auth: localAuth };
    if (rsaPss) local.rsaPadding = 'pss';
    if (raw.local.key !== undefined) local.key = raw.local.key.pem;
    if (raw.local.cert !== undefined) local.cert = raw.local.cert.pem;
    if (raw.local.certs !== undefined) local.certs = raw.local.certs;
    else if (raw.local.cert !== undefined) {
      const parsed = parseCertificate(new Uint8Array(raw.local.cert.cert.raw));
      if (parsed.ok) local.certs = [parsed.value];
    }
    const remote: EndpointConfig = { id: raw.remote.id ?? 'any', auth: remoteAuth };
    if (raw.remote.pubkey !== undefined) remote.pubkey = raw.remote.pubkey;
    if (raw.remote.cacerts !== undefined) remote.cacerts = raw.remote.cacerts;
    if (raw.remote.crls !== undefined) remote.crls = raw.remote.crls;
    if (raw.remote.revocation !== undefined) remote.revocation = raw.remote.revocation;

    const conn: Omit<ConnectionConfig, 'name'> = {
      localAddrs,
      remoteAddrs,
      remotePort: raw.remote_port,
      ike: raw.ike,
      local,
      remote,
      mobike: raw.mobike,
      encap: raw.encap,
      clone,
      redirect: raw.redirect,
      vips: raw.vips,
      pools: raw.pools,
      startAction: raw.start_action,
      dpdDelay: raw.dpd_delay,
      rekeyTime: raw.rekey_time,
      reauthTime: raw.reauth_time,
      overTime,
      randTime,
      // RFC 9611: per-resource Child SAs default to one per data-plane worker.
      children: Object.entries(raw.children).map(([name, child]) => ({ name, ...child, perCpuSasMax: child.perCpuSasMax ?? ctx.workers })),
    };
    if (psk !== undefined) conn.psk = psk;
    if (raw.send_cert !== undefined) conn.sendCert = raw.send_cert;
    if (raw.send_certreq !== undefined) conn.sendCertreq = raw.send_certreq;
    if (raw.dpd_action !== undefined) conn.dpdAction = raw.dpd_action;
    if (raw.keepalive !== undefined) conn.keepalive = raw.keepalive;
    if (raw.fragmentation !== undefined) conn.fragmentation = raw.fragmentation;
    if (raw.fragment_size !== undefined) conn.fragmentSize = raw.fragment_size;
    if (raw.dns.length > 0) conn.dns = raw.dns;
    return conn;
  });
}

/** The whole file: every section, each with its defaults. */
export function gatewaySchema(ctx: Ctx) {
  return section({
    log: section({ level: leaf(withDefault<LogLevel>('info', oneOf(LOG_LEVELS))) }, 'a mapping with level'),
    keylog: leaf(keylogDir(ctx)),
    listen: section({
      // Without an address the gateway has no socket to start on.
      address: leaf(withDefault<string[]>(() => ['0.0.0.0'], listOf('IP addresses to listen on', ipLiteral, 'at least one IP address to listen on (omit address for 0.0.0.0)'))),
      port: leaf(withDefault(DEFAULT_IKE_PORT, PORT)),
      natPort: leaf(withDefault(DEFAULT_NAT_PORT, PORT)),
    }, 'a mapping with address, port, natPort').transform((l, zctx) => {
      if (l.port === l.natPort) {
        report(zctx as unknown as IssueSink, new Problem(`natPort equals port (${l.port})`, 'two different ports', ['natPort']), l);
        return z.NEVER;
      }
      return { addresses: l.address, port: l.port, natPort: l.natPort } satisfies ListenConfig;
    }),
    limits: section({
      halfOpenCookieThreshold: leaf(withDefault(DEFAULT_LIMITS.halfOpenCookieThreshold, integer(0, 1_000_000))),
      halfOpenMax: leaf(withDefault(DEFAULT_LIMITS.halfOpenMax, integer(1, 1_000_000))),
      halfOpenPerSource: leaf(withDefault(DEFAULT_LIMITS.halfOpenPerSource, integer(1, 1_000_000))),
      childSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.childSasPerPeer, integer(1, 1_000_000))),
      ikeSasPerPeer: leaf(withDefault(DEFAULT_LIMITS.ikeSasPerPeer, integer(1, 1_000_000))),
    }, 'a mapping with halfOpenCookieThreshold, halfOpenMax, halfOpenPerSource, childSasPerPeer, ikeSasPerPeer').transform((l, zctx) => {
      if (l.halfOpenCookieThreshold > l.halfOpenMax) {
        report(zctx as unknown as IssueSink, new Problem(`${l.halfOpenCookieThreshold} is above halfOpenMax (${l.halfOpenMax})`, 'a threshold no larger than halfOpenMax', ['halfOpenCookieThreshold']), l);
        return z.NEVER;
      }
      return l satisfies LimitsConfig;
    }),
    retransmit: section({
      timeout: leaf(withDefault(DEFAULT_RETRANSMIT.timeout, duration)),
      base: leaf(withDefault(DEFAULT_RETRANSMIT.base, (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 1 && v <= 10 ? v : new Problem(got(v), 'a number from 1 to 10')))),
      tries: leaf(withDefault(DEFAULT_RETRANSMIT.tries, integer(0, 100))),
      maxTimeout: leaf(withDefault(DEFAULT_RETRANSMIT.maxTimeout, duration)),
    }, 'a mapping with timeout, base, tries, maxTimeout').transform((r, zctx) => {
      const sink = zctx as unknown as IssueSink;
      if (r.timeout === 0) { report(sink, new Problem('0 ms', 'a timeout above zero', ['timeout']), r); return z.NEVER; }
      if (r.maxTimeout < r.timeout) {
        report(sink, new Problem(`${r.maxTimeout} ms is below timeout (${r.timeout} ms)`, 'a maxTimeout no smaller than timeout', ['maxTimeout']), r);
        return z.NEVER;
      }
      return r satisfies RetransmitConfig;
    }),
    dataplane: section({
      workers: leaf(workersValue),
      tun: leaf(withDefault<string | undefined>(undefined, (v) => (typeof v === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(v) ? v : new Problem(got(v), "an interface name of 1 to 15 letters, digits, '.', '_' or '-'")))),
      tun_mtu: leaf(withDefault(DEFAULT_TUN_MTU, integer(576, 9000))),
      tun_queues: leaf(withDefault(1, integer(1, 64))),
      tun_offload: leaf(withDefault(true, boolean)),
      esp: leaf(withDefault('auto', oneOf(['auto', 'udp'] as const))),
      output: leaf(withDefault('workers', oneOf(['workers', 'io-thread'] as const))),
      tun_input: leaf(withDefault('workers', oneOf(['workers', 'io-thread'] as const))),
      worker_loop: leaf(withDefault<'epoll' | 'event-loop' | undefined>(undefined, oneOf(['epoll', 'event-loop'] as const))),
      ...pathFields(),
      steering: leaf(withDefault('kernel', oneOf(['kernel', 'io-thread'] as const))),
    }, 'a mapping with workers, tun, tun_mtu, tun_queues, tun_offload, tun_input, worker_loop, esp, output, steering, tunnel_mtu, outer_mtu, icmp_rate').transform((d): DataplaneConfig => ({
      ...d.workers,
      ...pathConfig(d),
      ...(d.tun !== undefined ? { tun: { name: d.tun, mtu: d.tun_mtu, queues: d.tun_queues, offload: d.tun_offload } } : {}),
      // 'auto' is what an absent field means: keep the default configuration's shape.
      ...(d.esp !== 'auto' ? { esp: d.esp } : {}),
      ...(d.output !== 'workers' ? { output: d.output } : {}),
      ...(d.tun_input !== 'workers' ? { tunInput: d.tun_input } : {}),
      ...(d.worker_loop !== undefined ? { workerLoop: d.worker_loop } : {}),
      ...(d.steering !== 'kernel' ? { steering: d.steering } : {}),
    })),
    metrics: section({
      listen: leaf(withDefault<MetricsConfig | undefined>(undefined, metricsListen)),
    }, 'a mapping with listen'),
    cluster: leaf(clusterSection(ctx)),
    connections: namedMap(connectionSchema(ctx), 'a mapping of connection names to connection options'),
  }, 'a mapping with log, keylog, listen, limits, retransmit, dataplane, metrics, cluster, connections').transform((raw, zctx): GatewayConfig => {
    const perNode = Object.entries(raw.connections).find(([, c]) => c.clone.per === 'node');
    if (perNode && raw.cluster === undefined) {
      report(zctx as unknown as IssueSink, new Problem('node, but there is no cluster: section', 'per: node only in a cluster', ['connections', perNode[0], 'clone', 'per']), raw);
      return z.NEVER;
    }
    const out: GatewayConfig = {
      log: raw.log,
      listen: raw.listen,
      limits: raw.limits,
      retransmit: raw.retransmit,
      dataplane: raw.dataplane,
      connections: Object.entries(raw.connections).map(([name, c]) => ({ name, ...c })),
    };
    if (raw.keylog !== undefined) out.keylog = raw.keylog;
    if (raw.metrics?.listen !== undefined) out.metrics = raw.metrics.listen;
    if (raw.cluster !== undefined) out.cluster = raw.cluster;
    return out;
  });
}
