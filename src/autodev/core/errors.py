"""Errors a user can act on, each carrying the CLI exit code of the contract."""


class AutodevError(Exception):
    exit_code = 1


class BadInput(AutodevError):
    """The plan, a file or an argument is wrong (exit 2); the message names the problem."""

    exit_code = 2


class EnvironmentProblem(AutodevError):
    """Docker engine, image or database missing or unreachable (exit 4); the message says the fix."""

    exit_code = 4

    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix


class _Carrying(AutodevError):
    """An error that carries the typed object it is about; picklable, as Prefect states need."""

    def __init__(self, message: str, payload):
        super().__init__(message)
        self.payload = payload

    def __reduce__(self):
        return (self.__class__, (str(self), self.payload))


class CommandFailed(_Carrying):
    """A step's command did not succeed; ends its task run Failed and carries its CommandResult."""

    @property
    def result(self):
        return self.payload


class RunFailed(_Carrying):
    """A run ended failed or blocked; ends the flow run Failed and carries its RunReport."""

    @property
    def report(self):
        return self.payload
