"""Agent steps continue their CLI's session (Codex `exec resume`, Claude Code `--resume`).

An agent CLI names its session in its event stream (`AgentStream`); the run keeps it with the
step (`doc.cli_sessions`). The step's next round continues that session, with a short word on
why the last one did not finish (a stall, a kill, a limit that reset, an orchestrator that died)
or with the evidence of the check that failed: the agent keeps the context of the work it did.
A round that finished well leaves its session for a failed check's feedback only. When the CLI
does not know the session any more (it failed without opening it), the step starts a new
session at once, with nothing counted against its retries or the breaker; the log says which
happened. The CLI's sessions folder is kept in the workspace (`.autodev/home/`, the sandbox's
`kept_home`), so a new sandbox, a resumed run's, finds them.
"""

from __future__ import annotations

import re

from autodev.core.agent import agent_cli_command, interruption, resume_instruction
from autodev.core.agents import AgentStream, agent_template, preset_of
from autodev.core.commands import AgentReport, CommandResult, StepAttempt
from autodev.core.engine.base import EngineParts
from autodev.core.engine.effects import Effects, Note
from autodev.core.models import Step
from autodev.core.session import CliSession, LeftAttempt

_SESSION_FIELD = re.compile(r'"(?:thread_id|session_id)"\s*:\s*"([A-Za-z0-9-]+)"')


class CliSessions(EngineParts):
    def _agent_command(self, step: Step, attempt: int, evidence: str | None) -> str | None:
        """The agent step's command line: its CLI continuing its session when there is one to
        continue, else a new session; None for the built-in agent."""
        session = self._to_continue(step, evidence)
        cli = agent_template(self.plan, step, session.id if session else None)
        if cli is None:
            return None
        if session is None:
            return agent_cli_command(cli, step.instruction or "", evidence)
        session.resumes, session.resumed_in = session.resumes + 1, attempt
        return agent_cli_command(cli, resume_instruction(session.why, evidence), None)

    def _to_continue(self, step: Step, evidence: str | None) -> CliSession | None:
        """The step's session, when its CLI can continue it and there is a reason to: its last
        round did not finish, or a failed check sent the run back to it."""
        preset = preset_of(self.plan, step)
        session = self.state.doc.cli_sessions.get(step.id)
        if preset is None or preset.resume is None or session is None or session.agent != preset.name:
            return None
        return session if session.why or evidence else None

    def _session_note(self, step: Step, attempt: int) -> Note | None:
        """What the log says of an agent round's session: continued (and why), or new."""
        preset = preset_of(self.plan, step)
        if preset is None or preset.resume is None or attempt == 1:
            return None
        session = self.state.doc.cli_sessions.get(step.id)
        if session is None or session.resumed_in != attempt:
            return Note("info", f"step {step.id} attempt {attempt}: a new {preset.name} session")
        why = session.why or "a failed check's evidence"
        return Note("info", f"step {step.id} attempt {attempt}: continues {preset.name} session {session.id} ({why})")

    def _record_session(self, step: Step, result: CommandResult) -> None:
        """Keep the session the round ran in, and whether it finished (what its next round is told)."""
        known = self.state.doc.cli_sessions.get(step.id)
        report = result.agent
        if report is not None and report.session_id and (known is None or known.id != report.session_id):
            resumes = known.resumes if known else 0
            known = self.state.doc.cli_sessions[step.id] = CliSession(agent=report.agent, id=report.session_id, resumes=resumes)
        if known is not None:
            known.why = None if result.status == "succeeded" else interruption(result)

    def _resume_refused(self, step: Step, stored: StepAttempt) -> bool:
        """The round was to continue a session, and the CLI failed without opening it: it does not
        know the session (any more)."""
        session = self.state.doc.cli_sessions.get(step.id)
        result = stored.result
        opened = result.agent is not None and result.agent.session_id is not None
        return session is not None and session.resumed_in == stored.attempt and result.status == "failed" and not opened

    def _start_afresh(self, step: Step, stored: StepAttempt) -> Effects:
        """Forget the session the CLI would not continue; the step starts a new one now, with
        nothing counted against its retries or the breaker."""
        session = self.state.doc.cli_sessions.pop(step.id)
        self.state.round_start[step.id] += 1  # this attempt alone is not counted against the retries
        said = stored.result.output_tail.strip().splitlines()[-1:] or [stored.result.exit_reason or "no output"]
        note = f"step {step.id}: its {session.agent} session {session.id} could not be continued ({said[0][:200]}): a new session starts"
        return Effects(attempts=[stored], notes=[Note("warning", note)])

    def _left_session(self, step: Step, left: LeftAttempt) -> AgentReport | None:
        """A round its orchestrator did not see end: its session, from the head of its log (the
        agent's report of it as far as the head tells)."""
        preset = preset_of(self.plan, step)
        if preset is None or preset.stream is None or preset.resume is None:
            return None
        stream = AgentStream(preset.stream)
        for line in left.output_head.splitlines():
            stream.feed(line)
        report = stream.report
        if report.session_id is None and (named := _SESSION_FIELD.search(left.output_head)):
            report.session_id = named.group(1)  # its first event was longer than the head
        if report.session_id:
            stopped = CommandResult.model_validate({
                "status": "succeeded" if left.exit_code == 0 else "failed", "exit_code": left.exit_code,
                "started_at": left.started_at or self.clock(), "finished_at": left.finished_at or self.clock(), "agent": report,
                "exit_reason": "the orchestrator running it stopped before it finished",
            })  # fmt: skip
            self._record_session(step, stopped)
        return report


def resumes_of(sessions: dict[str, CliSession]) -> dict[str, int]:
    """How often each agent step continued its session (the advice's evidence)."""
    return {step_id: s.resumes for step_id, s in sessions.items() if s.resumes}

