"""Run Weiyu on this machine: services, migrations, demo tenant, then the Procfile processes."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

from weiyu import devservices


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True)  # noqa: S603


def main() -> int:
    port = os.environ.get("PORT", "8000")
    urls = devservices.start()
    print(f"PostgreSQL: {urls['DATABASE_URL']}\nRedis:      {urls['REDIS_URL']}", flush=True)
    manage("migrate_schemas", "--executor", "standard")
    manage("demo_setup")
    password, _new = devservices.demo_password()  # made by demo_setup on the first run
    print(
        "\n"
        "  Weiyu is starting.\n"
        f"  Demo website with the chat widget:  http://demo.localhost:{port}/\n"
        f"  Agent inbox:                        http://demo.localhost:{port}/inbox/\n"
        f"      agents: alice / bob / carol     password: {password}\n"
        f"  Tenant back office:                 http://demo.localhost:{port}/admin/\n"
        f"      admin                           password: {password}\n"
        f"  Platform admin (tenants, domains):  http://localhost:{port}/admin/\n"
        f"      platform                        password: {password}\n",
        flush=True,
    )
    (ROOT / ".data").mkdir(exist_ok=True)
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-p", port], env=env
    )

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
