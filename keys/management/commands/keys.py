"""``manage.py keys ...``: operator subcommands, each a thin call into a keys service."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keys import services
from keys.conf import keys_settings
from keys.exceptions import KeysError
from keys.models import DataKey, ReencryptionJob


class Command(BaseCommand):
    help = "Inspect and manage encryption keys."
    requires_system_checks: list[str] = []  # must run when the master key is broken

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="Table of data keys: purpose, status, age, encryptions.")
        sub.add_parser("verify", help="Unwrap every data key and round-trip a value per purpose.")
        sub.add_parser("init", help="Create an active data key for every purpose that has none.")
        create = sub.add_parser("create-master", help="Write a new local master key file (0600).")
        create.add_argument("--path", type=Path, default=None, help="Where to write it (default: the configured file).")
        create.add_argument("--if-missing", action="store_true", help="Do nothing when the file already exists.")
        rotate = sub.add_parser("rotate", help="New active data key; the old one becomes decrypt-only.")
        rotate.add_argument("--purpose", choices=DataKey.Purpose.values, default=None, help="Default: every purpose.")
        rotate.add_argument("--due", action="store_true", help="Only keys past their rotation policy.")
        master = sub.add_parser("rotate-master", help="Rewrap every data key under a new master key.")
        target = master.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--new-key-file", type=Path, help="Local: the new 0600 key file, already configured as current (see docs)."
        )
        target.add_argument("--to", dest="provider", help="Another provider, e.g. pkcs11 or aws-kms.")
        again = sub.add_parser("reencrypt", help="Move every value onto the active keys (resumable).")
        again.add_argument("--purpose", choices=["field", "index"], default="field")
        again.add_argument("--batch", type=int, default=500)
        again.add_argument("--models", help="only these models (app_label.Model, comma-separated); default: every one")
        again.add_argument(
            "--parallel", type=int, default=1, metavar="N", help="N processes, each on its own models (N = cores)"
        )
        usage = sub.add_parser("usage", help="Count the stored values under a data key.")
        usage.add_argument("key_id", type=int)
        retire = sub.add_parser("retire", help="Retire a decrypt-only key no value uses any more.")
        retire.add_argument("key_id", type=int)
        uncounted_help = "file/session/audit/identity keys: their values cannot be counted; proceed anyway (audited)"
        retire.add_argument("--uncounted", action="store_true", help=uncounted_help)
        destroy = sub.add_parser("destroy", help="Erase a data key, irreversibly (refused while values use it).")
        destroy.add_argument("key_id", type=int)
        destroy.add_argument(
            "--crypto-shred", action="store_true", help="Destroy anyway: those values become unreadable."
        )
        destroy.add_argument("--dry-run", action="store_true", help="Show what would be destroyed; change nothing.")
        destroy.add_argument("--yes", action="store_true", help="Non-interactive: together with --confirm KEY_ID.")
        destroy.add_argument("--confirm", type=int, default=None, metavar="KEY_ID", help="Restate the key id.")
        destroy.add_argument("--uncounted", action="store_true", help=uncounted_help)
        shred = sub.add_parser(
            "shred-patient", help="Crypto-shred a patient: erase their records and their key (irreversible)."
        )
        shred.add_argument("patient_id", type=uuid.UUID)
        shred.add_argument("--dry-run", action="store_true", help="Count what would be erased; change nothing.")
        shred.add_argument("--yes", action="store_true", help="Do not ask (needs --confirm with the same id).")
        shred.add_argument("--confirm", type=uuid.UUID, default=None, help="The patient id again.")
        epochs = sub.add_parser("rotate-subject-epoch", help="New subject epoch when due; destroy retired epochs.")
        epochs.add_argument("--force", action="store_true", help="Start a new epoch now, due or not.")
        djc = sub.add_parser("import-djcrypto", help="Re-encrypt django-cryptography values in place (resumable).")
        djc.add_argument("--model", required=True, help="app_label.Model")
        djc.add_argument("--field", dest="fields", action="append", required=True, help="a field (repeat for more)")
        djc.add_argument("--secret-key-file", type=Path, default=None, help="the old deployment's SECRET_KEY")
        djc.add_argument("--cryptography-key-file", type=Path, default=None, help="its CRYPTOGRAPHY_KEY, if any")
        djc.add_argument("--salt", default=None, help="its CRYPTOGRAPHY_SALT, if not the default")
        djc.add_argument("--batch", type=int, default=500)
        for subcommand in sub.choices.values():
            who = subcommand.add_argument_group("who and why (recorded in the audit log)")
            who.add_argument("--operator", default=None, help="your account name (default: the OS user)")
            who.add_argument("--reason", default=None, help="maintenance, incident, rotation, support, audit or setup")
            who.add_argument("--ticket", default=None, help="change or incident ticket (kept as a keyed fingerprint)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            with keys_settings.OPERATOR_CONTEXT(options):
                getattr(self, "handle_" + action.replace("-", "_"))(**options)
        except KeysError as exc:
            raise CommandError(str(exc)) from None

    def handle_status(self, **options: Any) -> None:
        rows = services.key_inventory()
        if not rows:
            self.stdout.write("No data keys yet (they are created on first use or by `keys init`).")
            return
        self.stdout.write(
            f"{'ID':>5}  {'PURPOSE':<8} {'STATUS':<13} {'ALGORITHM':<12} {'AGE':>5} {'RESERVED*':>12}  WRAPPED BY"
        )
        for r in rows:
            self.stdout.write(
                f"{r.id:>5}  {r.purpose:<8} {r.status:<13} {r.algorithm:<12} {r.age_days:>4}d "
                f"{r.encryption_count:>12}  {r.wrapping_key_id}"
            )
        self.stdout.write(
            f"* encryptions reserved under the key: an upper bound on those made. Every process reserves "
            f"a block of {keys_settings.COUNT_BLOCK:,} at its first encryption (so each CLI run adds one); "
            "rotation policy and the hard limit count reservations, never fewer than were made."
        )

    def handle_verify(self, **options: Any) -> None:
        report = services.verify_keys()
        for line in report.checked:
            self.stdout.write(f"ok    {line}")
        for line in report.failures:
            self.stderr.write(f"FAIL  {line}")
        if not report.ok:
            raise CommandError(f"{len(report.failures)} key check(s) failed")
        self.stdout.write(self.style.SUCCESS(f"All {len(report.checked)} key checks passed."))

    def handle_init(self, **options: Any) -> None:
        created = services.init_keys()
        names = ", ".join(f"{k.purpose} (id {k.pk})" for k in created) or "none needed"
        self.stdout.write(f"Data keys created: {names}.")

    def handle_create_master(self, *, path: Path | None, if_missing: bool, **options: Any) -> None:
        target = path or keys_settings.MASTER_KEY_FILE
        if if_missing and target.exists():
            self.stdout.write(f"Master key file {target} already exists.")
            return
        written = services.create_master_key_file(target)
        self.stdout.write(
            f"Wrote a new master key to {written} (mode 0600). Back it up: without it no data is readable."
        )

    def handle_rotate(self, *, purpose: str | None, due: bool, **options: Any) -> None:
        from keys.rotation import rotate_data_key, rotate_due_keys

        if due:
            rotated = [(d.purpose, k) for d, k in rotate_due_keys(purpose=purpose)]
        else:
            purposes = [purpose] if purpose else list(DataKey.Purpose.values)
            rotated = [(p, rotate_data_key(p)) for p in purposes]
        for name, key in rotated:
            self.stdout.write(f"{name}: new active key {key.pk}; the previous one is decrypt-only.")
        if not rotated:
            self.stdout.write("No key is due for rotation.")
        else:
            self.stdout.write("Next: `manage.py keys reencrypt` moves existing values onto the new keys.")

    def handle_rotate_master(self, *, new_key_file: Path | None, provider: str | None, **options: Any) -> None:
        from keys.providers import build_provider
        from keys.providers.base import KeyProvider
        from keys.providers.local import LocalKeyProvider
        from keys.rotation import rotate_master_key

        target: KeyProvider
        if new_key_file is not None:
            if not new_key_file.exists():
                raise CommandError(
                    f"{new_key_file} does not exist. Create it first (`manage.py keys create-master --path "
                    f"{new_key_file}`), configure every process with it (docs/keys.md, step 1), then run this again."
                )
            target = LocalKeyProvider.from_key_file(new_key_file)
            hint = f"NEONPRO_MASTER_KEY_FILE={new_key_file}; remove the old file from NEONPRO_MASTER_KEY_PREVIOUS_FILES"
        else:
            assert provider is not None
            target = build_provider(provider)
            hint = f"NEONPRO_KEY_PROVIDER={provider}; remove the old provider from NEONPRO_KEY_PROVIDER_FALLBACKS"
        services.require_configured_master_key(target.current_key_id)
        count = rotate_master_key(target)
        self.stdout.write(f"Rewrapped {count} keys under master key {target.current_key_id}.")
        self.stdout.write(f"Keep {hint} once `keys verify` passes (docs/keys.md, step 3).")

    def handle_reencrypt(self, *, purpose: str, batch: int, models: str | None, parallel: int, **options: Any) -> None:
        from keys.reencrypt import parallel_groups, reencrypt

        labels = None if models is None else [label.strip() for label in models.split(",") if label.strip()]
        if labels == []:
            raise CommandError("--models names no model: give app_label.Model labels, comma-separated")
        if parallel != 1:
            self._reencrypt_in_parallel(purpose, batch, parallel_groups(purpose, parallel, labels))
            return
        jobs = reencrypt(purpose, batch=batch, progress=self._progress, labels=labels)
        sys.stderr.write("\n")
        for job in jobs:
            lost = f", {job.values_unreadable} under destroyed keys skipped" if job.values_unreadable else ""
            self.stdout.write(
                f"{job.model}: {job.rows_done} rows checked, {job.rows_changed} re-encrypted{lost} ({job.status})."
            )
        stopped = [job for job in jobs if job.status == ReencryptionJob.Status.FAILED]
        if stopped:
            raise CommandError(f"{stopped[0].model}: {stopped[0].error}; run `keys reencrypt` again if needed")

    def _reencrypt_in_parallel(self, purpose: str, batch: int, groups: list[list[str]]) -> None:
        """One child ``keys reencrypt --models …`` per group, run at once; each prints its own
        lines (progress as whole lines, prefixed by its models)."""
        import os
        import subprocess

        env = {**os.environ, "NEONPRO_KEYS_PROGRESS_LINES": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        children: list[tuple[list[str], subprocess.Popen[bytes]]] = []
        for group in groups:
            command = [sys.executable, "-m", "django", "keys", "reencrypt", "--purpose", purpose]
            command += ["--batch", str(batch), "--models", ",".join(group)]
            self.stdout.write(f"Re-encrypting {', '.join(group)} in process {len(children) + 1} of {len(groups)}.")
            children.append((group, subprocess.Popen(command, env=env)))  # noqa: S603 - our own command
        failed = [group for group, child in children if child.wait() != 0]
        if failed:
            names = "; ".join(", ".join(group) for group in failed)
            raise CommandError(f"re-encryption of {names} did not finish; run `keys reencrypt` again to resume")

    def _progress(self, job: ReencryptionJob, rate: float) -> None:
        import os
        import time

        remaining = max(job.rows_total - job.rows_done, 0)
        eta = f"{remaining / rate:,.0f}s" if rate > 0 else "?"
        done = f"{job.rows_done:,}/{job.rows_total:,} rows ({job.percent:5.1f}%)"
        line = f"{job.model}: {done}, {rate:,.0f} rows/s, ETA {eta}"
        if os.environ.get("NEONPRO_KEYS_PROGRESS_LINES"):  # beside other processes: whole lines, every 5 s
            now = time.monotonic()
            if now - getattr(self, "_last_line", 0.0) >= 5 or not remaining:
                self._last_line = now
                sys.stderr.write(line + "\n")
        else:
            sys.stderr.write(f"\r{line}   ")
        sys.stderr.flush()

    def handle_usage(self, *, key_id: int, **options: Any) -> None:
        from keys.rotation import count_key_usage

        usage = count_key_usage(self._key(key_id))  # "cannot count" (an error) for file/session/MAC keys
        for name, count in sorted(usage.items()):
            self.stdout.write(f"{name:<48} {count:>10}")
        self.stdout.write(f"data key {key_id}: {sum(usage.values())} values in total")

    def handle_retire(self, *, key_id: int, uncounted: bool, **options: Any) -> None:
        from keys.rotation import retire_data_key

        retire_data_key(self._key(key_id), uncounted=uncounted)
        how = "its values cannot be counted (--uncounted)" if uncounted else "no stored value used it"
        self.stdout.write(f"data key {key_id} retired: {how}.")

    def handle_destroy(
        self,
        *,
        key_id: int,
        crypto_shred: bool,
        dry_run: bool,
        yes: bool,
        confirm: int | None,
        uncounted: bool,
        **options: Any,
    ) -> None:
        from keys.rotation import destroy_data_key, plan_destroy, refuse_destroy

        key = self._key(key_id)
        plan = plan_destroy(key, crypto_shred=crypto_shred, uncounted=uncounted)
        self._describe(plan, crypto_shred)
        if dry_run:
            verdict = f"refused: {plan.refusal}" if plan.refusal else "allowed (with --yes --confirm)"
            self.stdout.write(f"dry run, nothing changed; destroying data key {key_id} would be {verdict}.")
            return
        flags = {"crypto_shred": crypto_shred, "uncounted": uncounted}
        if plan.refusal is not None:
            raise refuse_destroy(key, plan.refusal, plan.refusal_code, **flags)
        if not (yes and confirm is not None):
            confirm = self._ask(key_id, yes, confirm)
            if confirm is None:
                raise refuse_destroy(
                    key,
                    f"destroying data key {key_id} is irreversible: pass --yes --confirm {key_id}, "
                    "or run the command in a terminal to confirm",
                    "not_confirmed",
                    **flags,
                )
        usage = destroy_data_key(key, confirm=confirm, crypto_shred=crypto_shred, uncounted=uncounted)
        lost = sum(usage.values())
        suffix = f"; {lost} values it protected are now unreadable (crypto-shredded)" if lost else ""
        self.stdout.write(f"data key {key_id} destroyed{suffix}.")

    def _describe(self, plan: Any, crypto_shred: bool) -> None:
        counted = "" if plan.counted else " (its values cannot be counted)"
        self.stdout.write(f"data key {plan.key_id}: {plan.purpose}, {plan.status}{counted}")
        for name, count in sorted(plan.usage.items()):
            self.stdout.write(f"  {name:<46} {count:>10} values would become unreadable")
        if plan.counted:
            self.stdout.write(f"  {plan.values} values in total are under it")

    def _ask(self, key_id: int, yes: bool, confirm: int | None) -> int | None:
        """The key id typed at an interactive prompt, or None (no terminal, or --yes alone)."""
        if yes or confirm is not None or not sys.stdin.isatty():
            return None
        self.stdout.write(f"This destroys data key {key_id} irreversibly. Type its id to confirm: ", ending="")
        self.stdout.flush()
        typed = sys.stdin.readline().strip()
        return int(typed) if typed.isdigit() else -1

    def handle_shred_patient(
        self, *, patient_id: uuid.UUID, dry_run: bool, yes: bool, confirm: uuid.UUID | None, **options: Any
    ) -> None:
        from keys.subjects import shred_patient

        if not dry_run:
            if yes:
                if confirm != patient_id:
                    raise CommandError("--yes needs --confirm with the same patient id; nothing was erased")
            else:
                if not sys.stdin.isatty():
                    raise CommandError("not a terminal: pass --yes --confirm PATIENT_ID; nothing was erased")
                preview = shred_patient(patient_id, dry_run=True)
                self.stdout.write(preview.summary())
                answer = input("This cannot be undone. Type the patient id to shred: ").strip()
                if answer != str(patient_id):
                    raise CommandError("the id typed does not match; nothing was erased")
        self.stdout.write(shred_patient(patient_id, dry_run=dry_run).summary())

    def handle_rotate_subject_epoch(self, *, force: bool, **options: Any) -> None:
        from keys.subjects import rotate_subject_epoch

        self.stdout.write(rotate_subject_epoch(force=force).summary())

    def handle_import_djcrypto(
        self,
        *,
        model: str,
        fields: list[str],
        secret_key_file: Path | None,
        cryptography_key_file: Path | None,
        salt: str | None,
        batch: int,
        **options: Any,
    ) -> None:
        from keys.migrate_in import import_djcrypto

        def read(path: Path | None) -> str | None:
            return path.read_text().strip() if path else None

        counts = import_djcrypto(
            model,
            fields,
            secret_key=read(secret_key_file),
            cryptography_key=read(cryptography_key_file),
            salt=salt,
            batch=batch,
        )
        self.stdout.write(counts.summary())

    def _key(self, key_id: int) -> DataKey:
        key = DataKey.objects.filter(pk=key_id).first()
        if key is None:
            raise CommandError(f"no data key {key_id}")
        return key
