/**
 * True for a host that can only be this machine: 127.0.0.0/8, ::1, localhost. Plain http:// is
 * allowed only to such a host (the Phase 3 sandbox, tests). Expects a WHATWG URL's `hostname`, which
 * has already normalised numeric forms (http://2130706433/ → 127.0.0.1) and brackets IPv6.
 */
export function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname === '[::1]' ||
    hostname === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}
