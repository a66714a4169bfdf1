# task: count_words
# expect: pass
# threat: none (imports a wide range of the standard library, some not preloaded)
import collections
import csv
import decimal
import fractions
import functools
import hashlib
import heapq
import io
import itertools
import json
import re
import sqlite3
import statistics
import string
import textwrap
import xml.etree.ElementTree as ET
from typing import Dict


def count_words(text: str) -> Dict[str, int]:
    assert hashlib.md5(b"x").hexdigest()
    assert ET.fromstring("<a/>").tag == "a"
    conn = sqlite3.connect(":memory:")
    conn.execute("select 1")
    conn.close()
    return dict(collections.Counter(text.split()))
