"""What several test modules share: servers, fakes, policies and data builders."""
