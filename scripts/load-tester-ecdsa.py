# Lets strongSwan's load-tester plugin (src/libcharon/plugins/load_tester/
# load_tester_creds.c, 5.9.x) take an ECDSA issuer key, not only RSA: the
# key from issuer_key is loaded whatever its type, and it is offered for, and
# certified as, its own type. Every initiator signs with the issuer key, so
# ECDSA certificates need this. Used by scripts/build-load-tester.sh.
import sys

path = sys.argv[1]
src = open(path).read()
edits = [
    ("""	return lib->creds->create(lib->creds, CRED_PRIVATE_KEY, KEY_RSA,
					BUILD_FROM_FILE, path, BUILD_END);""",
     """	return lib->creds->create(lib->creds, CRED_PRIVATE_KEY, KEY_ANY,
					BUILD_FROM_FILE, path, BUILD_END);"""),
    ("""	if (type != KEY_ANY && type != KEY_RSA)
	{""", """	if (type != KEY_ANY && type != this->private->get_type(this->private))
	{"""),
    ("""	if (key != KEY_ANY && key != KEY_RSA)
	{""", """	if (key != KEY_ANY && (this->private == NULL || key != this->private->get_type(this->private)))
	{"""),
]
for old, new in edits:
    if src.count(old) != 1:
        sys.exit(f"load_tester_creds.c is not the expected 5.9.x source: {old.splitlines()[0]!r}")
    src = src.replace(old, new)
open(path, "w").write(src)
