"""The API's JSON body parser: DRF's, except that a body nested too deeply for Python's parser is a 400."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as BaseJSONParser


class JSONParser(BaseJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:  # e.g. [[[[…]]]] 50,000 deep: json.loads gives up; it is the client's body
            raise ParseError("JSON parse error - nested too deeply") from None
