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


class CommandFailed(AutodevError):
    """A step's command did not succeed; ends its task run Failed and carries the full result."""

    def __init__(self, message: str, result):
        super().__init__(message)
        self.result = result

    def __reduce__(self):
        return (self.__class__, (str(self), self.result))


class RunFailed(AutodevError):
    """A run ended failed or blocked; ends the flow run Failed and carries the run's report."""

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return (self.__class__, (str(self), self.report))
