"""What every target shares: the template environment, kernel names and the banner."""

from __future__ import annotations

import hashlib
import keyword
import re
from dataclasses import dataclass
from functools import cache

import jinja2

from .._version import __version__
from ..errors import SpecError
from ..lower import Problem
from ..resources import templates_dir

__all__ = ["RESERVED", "RESERVED_PREFIXES", "Target", "banner", "environment", "kernel_name"]

_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct
switch typedef union unsigned void volatile while _Bool _Complex _Imaginary""".split())
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")

_MATH = """acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1
frexp ilogb ldexp log log10 log1p log2 logb modf scalbn scalbln cbrt fabs hypot pow sqrt erf
erfc lgamma tgamma ceil floor nearbyint rint lrint llrint round lround llround trunc fmod
remainder remquo copysign nan nextafter nexttoward fdim fmax fmin fma""".split()
#: Identifiers of the C standard library and the POSIX/OpenMP symbols a kernel's process has
#: loaded: a kernel of one of these names would declare a clashing prototype, or call itself
#: where the generated code calls the library (memcpy, sqrt, the OpenMP runtime).
RESERVED = frozenset(_MATH + [f + suffix for f in _MATH for suffix in ("f", "l")] + """
assert errno isalnum isalpha isblank iscntrl isdigit isgraph islower isprint ispunct isspace
isupper isxdigit tolower toupper feclearexcept fegetenv fegetexceptflag fegetround
feholdexcept feraiseexcept fesetenv fesetexceptflag fesetround fetestexcept feupdateenv
imaxabs imaxdiv strtoimax strtoumax wcstoimax wcstoumax localeconv setlocale longjmp setjmp
sigsetjmp siglongjmp raise signal sigaction kill alarm pause va_arg va_copy va_end va_start
clearerr fclose feof ferror fflush fgetc fgetpos fgets fopen fprintf fputc fputs fread
freopen fscanf fseek fsetpos ftell fwrite getc getchar gets perror printf putc putchar puts
remove rename rewind scanf setbuf setvbuf snprintf sprintf sscanf tmpfile tmpnam ungetc
vfprintf vfscanf vprintf vscanf vsnprintf vsprintf vsscanf fileno fdopen popen pclose stdin
stdout stderr abort abs atexit atof atoi atol atoll bsearch calloc div exit _Exit free
getenv labs ldiv llabs lldiv malloc mblen mbstowcs mbtowc qsort rand realloc srand strtod
strtof strtol strtold strtoll strtoul strtoull system wcstombs wctomb aligned_alloc
posix_memalign memchr memcmp memcpy memmove memset strcat strchr strcmp strcoll strcpy
strcspn strerror strlen strncat strncmp strncpy strpbrk strrchr strspn strstr strtok strxfrm
strdup strndup asctime clock ctime difftime gmtime localtime mktime strftime time timespec
nanosleep sleep usleep read write open close lseek dup dup2 pipe fork exec execv execve
execvp getpid getppid getuid geteuid access unlink rmdir chdir getcwd mmap munmap mprotect
dlopen dlsym dlclose dlerror pthread_create pthread_join pthread_self pthread_mutex_lock
pthread_mutex_unlock main environ optarg optind""".split())
#: Prefixes of runtimes a kernel links against (OpenMP: GCC's GOMP, LLVM's kmp) and of
#: Python's and cffi's own symbols.
RESERVED_PREFIXES = ("omp_", "GOMP_", "gomp_", "kmp_", "__kmp", "Py_", "_Py", "_cffi_",
                     "_convgen_")


@dataclass(frozen=True)
class Target:
    """A language the kernels are written in: its name, its element types by dtype, and how
    a pointer parameter is declared (``const`` inputs, writable outputs)."""

    name: str
    types: dict
    input_parameter: str    # format with type and name: a const pointer
    output_parameter: str   # format with type and name: a writable pointer
    index_type: str         # the 64-bit integer of max pooling's indices

    def parameters(self, problem: Problem) -> list[str]:
        """The pointer parameters, in argument order: x, [w], [b], [residual], y, [indices], each of
        its array's type (:meth:`convgen.lower.Problem.dtype_of`)."""
        return [self.input_parameter.format(type=self.types[problem.dtype_of(a)], name=a)
                if a in ("x", "w", "b", "residual") else
                self.output_parameter.format(type=self.index_type, name=a) if a == "indices"
                else self.output_parameter.format(type=self.types[problem.dtype_of(a)], name=a)
                for a in problem.arguments]


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: strict undefined variables, deterministic whitespace."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=False)


def kernel_name(problem: Problem, name: str | None = None) -> str:
    """A C identifier for the kernel: ``name`` when given (validated), else derived from a
    hash of the spec, the sample shape and the dtype."""
    if name is not None:
        if not isinstance(name, str) or not _NAME.match(name) or name in _C_KEYWORDS \
                or keyword.iskeyword(name) or name.startswith("__"):
            raise SpecError(f"name={name!r} must be a C identifier: a letter or '_' then "
                            "letters, digits or '_', at most 63 characters, not a C keyword "
                            "and not starting with '__'")
        if name in RESERVED or name.startswith(RESERVED_PREFIXES) or \
                re.match(r"_[A-Z]|Py[A-Z]", name):
            raise SpecError(f"name={name!r} is reserved: it names a C library, POSIX, OpenMP "
                            "or Python function or macro (or starts with '_' and a capital "
                            "letter, which C reserves), which the kernel would clash with or "
                            "call in place of the library; choose another name")
        return name
    layer = problem.layer
    spec = f"{layer!r}|{tuple(problem.sample)!r}|{problem.dtype}"
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return f"{type(layer).__name__.lower()}_{digest}_{problem.dtype}"


def banner(problem: Problem, template: str) -> list[str]:
    """The first lines of every generated file: generator, template, spec, shapes."""
    return [f"Generated by convgen {__version__} from templates/{template}; do not edit.",
            f"Layer: {problem.layer.describe()}",
            f"Input (N, {', '.join(map(str, problem.sample))}) -> output (N, "
            f"{', '.join(map(str, problem.out))}), {problem.dtype}, N = batch at run time."]
