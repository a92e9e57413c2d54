"""The rollout workers of the GRPO loop: one `mpirun -np N bitroll worker` job for the whole run (persistent), or a
`mpirun -np N bitroll generate` per round (relaunch, which loads the whole checkpoint every time).

Persistent protocol (bitroll worker --help): the trainer writes one JSON request per round on the job's stdin (a
.safetensors file of the new weights, the fingerprint they must have, and generate's options for the round); rank 0
reads the file, every rank receives its bytes over MPI and checks the fingerprint, the round runs, and rank 0 answers
with one JSON line on stdout.
"""

import json
import os
import subprocess

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}


class WorkerError(RuntimeError):
    pass


def _env():
    return {**os.environ, **MPI_ENV}


class PersistentWorkers:
    """`mpirun -np NP BINARY worker START_ARGS...`, started once; ``round()`` serves one request."""

    def __init__(self, mpirun, np_, binary, start_args, stderr_path):
        self.cmd = [mpirun, "-np", str(np_), binary, "worker", *start_args]
        self._err = open(stderr_path, "w")
        self.p = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                  text=True, bufsize=1, env=_env())
        self.stderr_path = stderr_path
        self.ready = self._read("start-up")
        if not self.ready.get("ready"):
            raise WorkerError(f"{' '.join(self.cmd)}: unexpected first line {self.ready}")
        self._next = 0

    def _read(self, what):
        line = self.p.stdout.readline()
        if not line:
            code = self.p.wait()
            self._err.flush()
            with open(self.stderr_path) as f:
                err = f.read()[-4000:]
            raise WorkerError(f"{' '.join(self.cmd)}: ended ({code}) during {what}:\n{err}")
        try:
            return json.loads(line)
        except json.JSONDecodeError as e:
            raise WorkerError(f"worker: {what}: not a JSON answer: {line!r} ({e})") from None

    def round(self, args, weights=None, fingerprint=None):
        """Sends one request; returns its answer (a dict with ok, out, fingerprint, seconds, ...)."""
        req = {"id": self._next, "args": [str(a) for a in args]}
        self._next += 1
        if weights:
            req["weights"] = weights
        if fingerprint:
            req["fingerprint"] = fingerprint
        try:
            self.p.stdin.write(json.dumps(req) + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass  # _read reports the job's end and its stderr
        ans = self._read(f"request {req['id']}")
        if ans.get("id") != req["id"]:
            raise WorkerError(f"worker: answer {ans} does not belong to request {req['id']}")
        if not ans.get("ok"):
            raise WorkerError(f"worker: request {req['id']} failed (exit code {ans.get('exit_code')}): "
                              f"{ans.get('error')}")
        return ans

    def close(self, timeout=60):
        """EOF on stdin: the job ends (exit 0 expected)."""
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except BrokenPipeError:
                pass
            try:
                code = self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                code = self.p.wait()
        else:
            code = self.p.returncode
        self._err.close()
        return code


def relaunch_round(mpirun, np_, binary, start_args, args):
    """One round by a fresh `mpirun ... bitroll generate` (the checkpoint is named in start_args)."""
    cmd = [mpirun, "-np", str(np_), binary, "generate", *start_args, *[str(a) for a in args]]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise WorkerError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
